#include "rbp/sparse_layer.hpp"

#include "batch_major_sparse.hpp"

#include <algorithm>

namespace rbp {

template <class T>
SparseLayer<T>::SparseLayer(Index inputs, Index outputs, bool bias, double density, Rng& mask_rng)
    : inputs_(inputs), outputs_(outputs), density_(density), has_bias_(bias) {
    require(inputs > 0 && outputs > 0, "layer sizes must be positive");
    require(density > 0.0 && density <= 1.0, "connection density must lie in (0, 1], got " + std::to_string(density));
    row_ptr_.assign(static_cast<std::size_t>(outputs + 1), 0);
    col_.reserve(static_cast<std::size_t>(density * static_cast<double>(inputs) * static_cast<double>(outputs) * 1.05) +
                 16);
    for (Index i = 0; i < outputs; ++i) {
        for (Index j = 0; j < inputs; ++j)
            if (mask_rng.uniform() < density) col_.push_back(j);
        row_ptr_[static_cast<std::size_t>(i + 1)] = static_cast<Index>(col_.size());
    }
    finish_structure();
}

template <class T>
void SparseLayer<T>::finish_structure() {
    col_.shrink_to_fit();
    const Index nnz = this->nnz();
    values_ = Matrix<T>::Zero(1, nnz);
    bias_ = Matrix<T>::Zero(1, has_bias_ ? outputs_ : 0);
    // CSC index: count entries per column, prefix sums, then fill in row order (rows ascending).
    col_ptr_.assign(static_cast<std::size_t>(inputs_ + 1), 0);
    for (Index j : col_) ++col_ptr_[static_cast<std::size_t>(j + 1)];
    for (Index j = 0; j < inputs_; ++j)
        col_ptr_[static_cast<std::size_t>(j + 1)] += col_ptr_[static_cast<std::size_t>(j)];
    csc_row_.assign(static_cast<std::size_t>(nnz), 0);
    csc_pos_.assign(static_cast<std::size_t>(nnz), 0);
    std::vector<Index> next(col_ptr_.begin(), col_ptr_.end() - 1);
    for (Index i = 0; i < outputs_; ++i) {
        for (Index k = row_ptr_[static_cast<std::size_t>(i)]; k < row_ptr_[static_cast<std::size_t>(i + 1)]; ++k) {
            const auto slot =
                static_cast<std::size_t>(next[static_cast<std::size_t>(col_[static_cast<std::size_t>(k)])]++);
            csc_row_[slot] = i;
            csc_pos_[slot] = k;
        }
    }
}

template <class T>
void SparseLayer<T>::forward(const ConstMatrixRef<T>& x, MatrixRef<T> s) const {
    sparse_kernels::csr_times_transpose<T, Index>(x, row_ptr_.data(), col_.data(), values_.data(),
                                                  has_bias_ ? bias_.data() : nullptr, nnz(), s);
}

template <class T>
void SparseLayer<T>::backward(const ConstMatrixRef<T>& g, MatrixRef<T> j) const {
    // J^T row c = sum over column c's entries of w * G^T[row]: the CSC index.
    sparse_kernels::batch_major_product<T>(
        g, col_ptr_.data(), nullptr, nnz(),
        [&](const T* gt, Index ld) {
            return sparse_kernels::ColumnEntries<T>{values_.data(), csc_pos_.data(), csc_row_.data(), gt, ld};
        },
        j);
}

template <class T>
void SparseLayer<T>::accumulate_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T scale,
                                       std::vector<Matrix<T>*>& targets) const {
    using namespace sparse_kernels;
    const Index n = b.rows();
    if (n == 0) return;
    const Index ld = padded<T>(n);
    Scratch<T>& buffers = scratch<T>();
    T* bt = grow(buffers.first, outputs_ * ld);  // B^T (n_out, ld)
    T* xt = grow(buffers.second, inputs_ * ld);  // X^T (n_in, ld)
    transpose_into(bt, ld, b);
    transpose_into(xt, ld, x);
    T* target = targets[0]->data();
    const Index* row_ptr = row_ptr_.data();
    const Index* col = col_.data();
    // (B^T X)_{ij} = sum_b B[b, i] X[b, j]: one contiguous dot product per stored entry. The
    // order of every sum depends only on the structure, never on the thread count.
    const int threads = loop_threads(n * nnz(), outputs_);
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads) if (threads > 1)
    for (Index i = 0; i < outputs_; ++i) dot_row(bt + i * ld, ld, col, xt, row_ptr[i], row_ptr[i + 1], scale, target);
    if (has_bias_) targets[1]->row(0).noalias() += scale * b.colwise().sum();
}

template <class T>
void SparseLayer<T>::accumulate_quantized_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T lr,
                                                 const Quantizer& q, Rng& rng, std::vector<Matrix<T>*>& targets) const {
    // The arithmetic of DenseLayer::accumulate_quantized_update, entry by entry.
    const Index n = b.rows();
    const T inv_n = T(1) / static_cast<T>(n);
    const QuantizerGrid<T> grid(q);
    T* target = targets[0]->data();
    for (Index e = 0; e < n; ++e) {
        const auto xe = x.row(e);
        for (Index i = 0; i < outputs_; ++i) {
            const T coefficient = lr * b(e, i);
            if (grid.nearest() && coefficient == T(0)) continue;  // Q(0) = 0
            const Index begin = row_ptr_[static_cast<std::size_t>(i)];
            const Index end = row_ptr_[static_cast<std::size_t>(i + 1)];
            for (Index k = begin; k < end; ++k)
                target[k] += inv_n * grid(coefficient * xe(col_[static_cast<std::size_t>(k)]), rng);
        }
        if (has_bias_) grid.add_to_bias(b.row(e), lr, inv_n, rng, targets[1]->row(0));
    }
}

template <class T>
std::vector<Matrix<T>*> SparseLayer<T>::parameters() {
    if (has_bias_) return {&values_, &bias_};
    return {&values_};
}

template <class T>
std::vector<const Matrix<T>*> SparseLayer<T>::parameters() const {
    if (has_bias_) return {&values_, &bias_};
    return {&values_};
}

template <class T>
void SparseLayer<T>::initialise(Init init, Rng& rng) {
    // Exactly DenseLayer's draws (dense fan-in and fan-out, one draw per dense entry), then keep the
    // masked entries: W = mask * W_dense, and the init stream advances as for a dense layer.
    DenseLayer<T> dense(inputs_, outputs_, false);
    dense.initialise(init, rng);
    const Matrix<T>& w = dense.weight();
    for (Index i = 0; i < outputs_; ++i)
        for (Index k = row_ptr_[static_cast<std::size_t>(i)]; k < row_ptr_[static_cast<std::size_t>(i + 1)]; ++k)
            values_(0, k) = w(i, col_[static_cast<std::size_t>(k)]);
    bias_.setZero();
}

template <class T>
Matrix<T> SparseLayer<T>::dense_weight() const {
    Matrix<T> w = Matrix<T>::Zero(outputs_, inputs_);
    for (Index i = 0; i < outputs_; ++i)
        for (Index k = row_ptr_[static_cast<std::size_t>(i)]; k < row_ptr_[static_cast<std::size_t>(i + 1)]; ++k)
            w(i, col_[static_cast<std::size_t>(k)]) = values_(0, k);
    return w;
}

template <class T>
void SparseLayer<T>::set_dense_weight(const ConstMatrixRef<T>& w) {
    require(w.rows() == outputs_ && w.cols() == inputs_,
            "weight must have shape (" + std::to_string(outputs_) + ", " + std::to_string(inputs_) + ")");
    // Check everything first, so that a rejected matrix leaves the layer unchanged.
    for (Index i = 0; i < outputs_; ++i) {
        Index k = row_ptr_[static_cast<std::size_t>(i)];
        const Index end = row_ptr_[static_cast<std::size_t>(i + 1)];
        for (Index c = 0; c < inputs_; ++c) {
            if (k < end && col_[static_cast<std::size_t>(k)] == c) {
                ++k;
            } else if (w(i, c) != T(0)) {
                throw std::invalid_argument("weight has a non-zero entry at (" + std::to_string(i) + ", " +
                                            std::to_string(c) + ") outside the layer's connectivity mask");
            }
        }
    }
    for (Index i = 0; i < outputs_; ++i)
        for (Index k = row_ptr_[static_cast<std::size_t>(i)]; k < row_ptr_[static_cast<std::size_t>(i + 1)]; ++k)
            values_(0, k) = w(i, col_[static_cast<std::size_t>(k)]);
}

template <class T>
BoolMatrix SparseLayer<T>::mask() const {
    BoolMatrix m = BoolMatrix::Zero(outputs_, inputs_);
    for (Index i = 0; i < outputs_; ++i)
        for (Index k = row_ptr_[static_cast<std::size_t>(i)]; k < row_ptr_[static_cast<std::size_t>(i + 1)]; ++k)
            m(i, col_[static_cast<std::size_t>(k)]) = true;
    return m;
}

template class SparseLayer<float>;
template class SparseLayer<double>;

}  // namespace rbp
