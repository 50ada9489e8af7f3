// A fully connected layer with a fixed random connectivity mask, stored and computed sparse.
//
// W^h (n_out, n_in) keeps entry (i, j) with probability `density`, independently of every other
// entry; nothing else is guaranteed (a row or a column may be empty). The structure never changes:
// only the kept entries are stored (CSR, plus a CSC index for the adjoint), trained and counted.
//
//   forward            S = X W^T + b             (n * nnz multiply-accumulates)
//   backward (adjoint) J = G W                   (n * nnz)
//   update             scale * (B^T X) at the mask's non-zeros only, scale * colsum(B) to the bias
//                      (also quantised per example, as DenseLayer does)
//
// parameters() is {values (1 x nnz, the kept entries in row-major order), bias (1 x n_out)}, so the
// trainer's momentum buffers work unchanged; dense_weight() / set_dense_weight() give the dense
// (n_out, n_in) matrix with zeros off the mask.
//
// Initialisation draws a whole dense matrix from the init stream exactly as DenseLayer does (same
// formula with the dense fan-in and fan-out, same number of draws) and keeps the masked entries: the
// sparse layer starts as mask * W_dense of the same seed, and the layers after it are initialised
// exactly as in the dense network.
#pragma once

#include "rbp/layer.hpp"

namespace rbp {

using BoolMatrix = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
class SparseLayer final : public Layer<T> {
public:
    // Draws the mask: one mask_rng.uniform() per entry in row-major order, kept when < density.
    SparseLayer(Index inputs, Index outputs, bool bias, double density, Rng& mask_rng);

    std::string kind() const override { return "sparse"; }
    Index input_size() const override { return inputs_; }
    Index output_size() const override { return outputs_; }

    void forward(const ConstMatrixRef<T>& x, MatrixRef<T> s) const override;
    void backward(const ConstMatrixRef<T>& g, MatrixRef<T> j) const override;
    void accumulate_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T scale,
                           std::vector<Matrix<T>*>& targets) const override;
    std::vector<Matrix<T>*> parameters() override;
    std::vector<const Matrix<T>*> parameters() const override;
    void initialise(Init init, Rng& rng) override;
    Index forward_macs() const override { return nnz(); }
    // DenseLayer's quantised update restricted to the stored entries (one rng draw per stored
    // entry and example under stochastic rounding).
    void accumulate_quantized_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T lr, const Quantizer& q,
                                     Rng& rng, std::vector<Matrix<T>*>& targets) const override;

    Matrix<T> dense_weight() const override;
    // Requires the shape (n_out, n_in) and zeros off the mask (std::invalid_argument otherwise).
    void set_dense_weight(const ConstMatrixRef<T>& w) override;

    double density() const { return density_; }
    Index nnz() const { return static_cast<Index>(col_.size()); }
    BoolMatrix mask() const;
    const std::vector<Index>& row_pointers() const { return row_ptr_; }
    const std::vector<Index>& column_indices() const { return col_; }
    Matrix<T>& values() { return values_; }
    const Matrix<T>& values() const { return values_; }
    Matrix<T>& bias() { return bias_; }
    const Matrix<T>& bias() const { return bias_; }

private:
    void finish_structure();

    Index inputs_ = 0;
    Index outputs_ = 0;
    double density_ = 1.0;
    bool has_bias_ = true;
    // CSR of W: row i holds col_[row_ptr_[i] .. row_ptr_[i+1]), values_ in the same order.
    std::vector<Index> row_ptr_;
    std::vector<Index> col_;
    // CSC index of the same entries (for the adjoint): column j holds rows csc_row_[k] and value
    // positions csc_pos_[k] for k in [col_ptr_[j], col_ptr_[j+1]), rows ascending.
    std::vector<Index> col_ptr_;
    std::vector<Index> csc_row_;
    std::vector<Index> csc_pos_;
    Matrix<T> values_;  // 1 x nnz
    Matrix<T> bias_;    // 1 x n_out; 1 x 0 when the layer has no bias
};

}  // namespace rbp
