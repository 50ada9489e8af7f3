// The layer interface. A layer is the linear part of one stage of the network (S = map(O_prev));
// the transfer function and the stage's max-pooling (conv.hpp: its argmax is state of the training
// workspace, not of the layer) are applied by the network. The trainer and the learning channels use
// this interface for dense, sparse and convolutional layers alike.
#pragma once

#include "rbp/gemm.hpp"
#include "rbp/options.hpp"
#include "rbp/quantize.hpp"
#include "rbp/random.hpp"
#include "rbp/types.hpp"

#include <memory>
#include <string>
#include <vector>

namespace rbp {

template <class T>
class Layer {
public:
    virtual ~Layer() = default;

    virtual std::string kind() const = 0;
    virtual Index input_size() const = 0;
    virtual Index output_size() const = 0;

    // S = map(X): x is (batch, input_size), s is (batch, output_size).
    virtual void forward(const ConstMatrixRef<T>& x, MatrixRef<T> s) const = 0;

    // The adjoint (transpose) of the map applied to a signal at the layer's output:
    // j = g W for a dense layer, i.e. (W)^T g per example. This is how BP and SBP send signals down.
    virtual void backward(const ConstMatrixRef<T>& g, MatrixRef<T> j) const = 0;

    // Adds scale * (ascent direction of every parameter) into `targets`, which has the shapes of
    // parameters(): for a dense layer scale * B^T X and scale * column sums of B, with B the
    // postsynaptic signal (batch, output_size) and X the presynaptic activity (batch, input_size).
    virtual void accumulate_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T scale,
                                   std::vector<Matrix<T>*>& targets) const = 0;

    // forward and accumulate_update for an input whose all-zero blocks `zeros` marks (gemm.hpp; no
    // marks: the plain ones); layers that cannot skip them run the plain ones.
    virtual void forward_skipping_zeros(const ConstMatrixRef<T>& x, const ZeroBlocks& /*zeros*/, MatrixRef<T> s) const {
        forward(x, s);
    }
    virtual void accumulate_update_skipping_zeros(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x,
                                                  const ZeroBlocks& /*zeros*/, T scale,
                                                  std::vector<Matrix<T>*>& targets) const {
        accumulate_update(b, x, scale, targets);
    }

    // The trainable tensors, each stored as a row-major matrix (a bias is 1 x n).
    virtual std::vector<Matrix<T>*> parameters() = 0;
    virtual std::vector<const Matrix<T>*> parameters() const = 0;

    virtual void initialise(Init init, Rng& rng) = 0;

    // Multiply-accumulates of one forward pass per example (used for complexity counts).
    virtual Index forward_macs() const = 0;

    // Low-bit weight updates: adds (1/n) sum_b Q(lr * B_b (x) X_b) into `targets`, quantising every
    // per-example update (bias: Q(lr * B_b)) before the batch average, without storing them.
    virtual void accumulate_quantized_update(const ConstMatrixRef<T>& /*b*/, const ConstMatrixRef<T>& /*x*/, T /*lr*/,
                                             const Quantizer& /*q*/, Rng& /*rng*/,
                                             std::vector<Matrix<T>*>& /*targets*/) const {
        throw std::invalid_argument("a '" + kind() + "' layer does not support quantised weight updates");
    }

    // The weight as a dense (output_size, input_size) matrix W (a copy; zeros where a sparse layer
    // has no connection), and its replacement from one. Layers without a dense weight throw.
    virtual Matrix<T> dense_weight() const {
        throw std::invalid_argument("a '" + kind() + "' layer has no dense weight matrix");
    }
    virtual void set_dense_weight(const ConstMatrixRef<T>& /*w*/) {
        throw std::invalid_argument("a '" + kind() + "' layer has no dense weight matrix");
    }
};

// Fully connected layer: W of shape (n_out, n_in) as in the paper, and an optional bias.
template <class T>
class DenseLayer final : public Layer<T> {
public:
    DenseLayer(Index inputs, Index outputs, bool bias);

    std::string kind() const override { return "dense"; }
    Index input_size() const override { return weight_.cols(); }
    Index output_size() const override { return weight_.rows(); }

    void forward(const ConstMatrixRef<T>& x, MatrixRef<T> s) const override;
    void backward(const ConstMatrixRef<T>& g, MatrixRef<T> j) const override;
    void accumulate_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T scale,
                           std::vector<Matrix<T>*>& targets) const override;
    void forward_skipping_zeros(const ConstMatrixRef<T>& x, const ZeroBlocks& zeros, MatrixRef<T> s) const override;
    void accumulate_update_skipping_zeros(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x,
                                          const ZeroBlocks& zeros, T scale,
                                          std::vector<Matrix<T>*>& targets) const override;
    std::vector<Matrix<T>*> parameters() override;
    std::vector<const Matrix<T>*> parameters() const override;
    void initialise(Init init, Rng& rng) override;
    Index forward_macs() const override { return weight_.size(); }
    void accumulate_quantized_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T lr, const Quantizer& q,
                                     Rng& rng, std::vector<Matrix<T>*>& targets) const override;
    Matrix<T> dense_weight() const override { return weight_; }
    void set_dense_weight(const ConstMatrixRef<T>& w) override;
    // The forward product and the update on a sparse input batch, with this layer's weights held
    // transposed in w_t (gemm.hpp's sparse products): the trainer's first layer on MNIST-like inputs.
    // The update adds scale B^T X into w_t and scale * column sums of B into `bias` (null: no bias).
    void forward_sparse(const SparseRows<T>& x, const ConstMatrixRef<T>& w_t, MatrixRef<T> s) const;
    void accumulate_update_sparse(const ConstMatrixRef<T>& b, const SparseRows<T>& x, T scale, MatrixRef<T> w_t,
                                  Matrix<T>* bias) const;

    Matrix<T>& weight() { return weight_; }
    const Matrix<T>& weight() const { return weight_; }
    Matrix<T>& bias() { return bias_; }
    const Matrix<T>& bias() const { return bias_; }

private:
    // Every forward product accumulates onto the bias rows (S = b, then S += X W^T: one sweep fewer), and
    // every update adds scale * the column sums of B into the bias; for the dense and the sparse input alike.
    void fill_bias_rows(MatrixRef<T> s) const;
    void accumulate_bias_update(const ConstMatrixRef<T>& b, T scale, Matrix<T>* bias) const;

    Matrix<T> weight_;
    Matrix<T> bias_;  // 1 x n_out; 1 x 0 when the layer has no bias
    bool has_bias_;
};

// Draws `m` in place: zero-mean Gaussian with standard deviation `stddev`.
template <class T>
void fill_normal(Matrix<T>& m, double stddev, Rng& rng);

}  // namespace rbp
