#include "rbp/layer.hpp"

#include "rbp/gemm.hpp"
#include "rbp/parallel.hpp"

#include <cmath>

namespace rbp {

template <class T>
void fill_normal(Matrix<T>& m, double stddev, Rng& rng) {
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(stddev * rng.normal());
}

template <class T>
DenseLayer<T>::DenseLayer(Index inputs, Index outputs, bool bias)
    : weight_(Matrix<T>::Zero(outputs, inputs)), bias_(Matrix<T>::Zero(1, bias ? outputs : 0)), has_bias_(bias) {
    require(inputs > 0 && outputs > 0, "layer sizes must be positive");
}

template <class T>
void DenseLayer<T>::forward(const ConstMatrixRef<T>& x, MatrixRef<T> s) const {
    forward_skipping_zeros(x, ZeroBlocks{}, s);
}

template <class T>
void DenseLayer<T>::fill_bias_rows(MatrixRef<T> s) const {
    if (has_bias_)
        for_row_blocks(s.rows(), s.cols(),
                       [&](Index first, Index end) { s.middleRows(first, end - first).rowwise() = bias_.row(0); });
}

template <class T>
void DenseLayer<T>::accumulate_bias_update(const ConstMatrixRef<T>& b, T scale, Matrix<T>* bias) const {
    if (has_bias_) bias->row(0).noalias() += scale * b.colwise().sum();
}

template <class T>
void DenseLayer<T>::forward_skipping_zeros(const ConstMatrixRef<T>& x, const ZeroBlocks& zeros, MatrixRef<T> s) const {
    fill_bias_rows(s);  // S = b + X W^T
    if (zeros.masks != nullptr)
        gemm_skipping_zeros_forward<T>(x, zeros, weight_, s, has_bias_);
    else
        gemm<T>(T(1), x, false, weight_, true, s, has_bias_);
}

template <class T>
void DenseLayer<T>::backward(const ConstMatrixRef<T>& g, MatrixRef<T> j) const {
    gemm<T>(T(1), g, false, weight_, false, j, false);  // J = G W
}

template <class T>
void DenseLayer<T>::accumulate_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T scale,
                                      std::vector<Matrix<T>*>& targets) const {
    accumulate_update_skipping_zeros(b, x, ZeroBlocks{}, scale, targets);
}

template <class T>
void DenseLayer<T>::accumulate_update_skipping_zeros(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x,
                                                     const ZeroBlocks& zeros, T scale,
                                                     std::vector<Matrix<T>*>& targets) const {
    if (zeros.masks != nullptr)
        gemm_skipping_zeros_update<T>(scale, b, x, zeros, *targets[0]);
    else
        gemm<T>(scale, b, true, x, false, *targets[0], true);  // W += scale B^T X
    accumulate_bias_update(b, scale, has_bias_ ? targets[1] : nullptr);
}

template <class T>
void DenseLayer<T>::forward_sparse(const SparseRows<T>& x, const ConstMatrixRef<T>& w_t, MatrixRef<T> s) const {
    fill_bias_rows(s);
    gemm_sparse_forward<T>(x, w_t, s, has_bias_);
}

template <class T>
void DenseLayer<T>::accumulate_update_sparse(const ConstMatrixRef<T>& b, const SparseRows<T>& x, T scale,
                                             MatrixRef<T> w_t, Matrix<T>* bias) const {
    gemm_sparse_update<T>(scale, b, x, w_t);
    accumulate_bias_update(b, scale, bias);
}

template <class T>
void DenseLayer<T>::set_dense_weight(const ConstMatrixRef<T>& w) {
    require(w.rows() == weight_.rows() && w.cols() == weight_.cols(),
            "weight must have shape (" + std::to_string(weight_.rows()) + ", " + std::to_string(weight_.cols()) + ")");
    weight_ = w;
}

template <class T>
void DenseLayer<T>::accumulate_quantized_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T lr,
                                                const Quantizer& q, Rng& rng, std::vector<Matrix<T>*>& targets) const {
    const Index n = b.rows();
    const T inv_n = T(1) / static_cast<T>(n);
    const QuantizerGrid<T> grid(q);
    Matrix<T>& w = *targets[0];
    for (Index e = 0; e < n; ++e) {
        const auto xe = x.row(e);
        for (Index i = 0; i < w.rows(); ++i) {
            const T coefficient = lr * b(e, i);
            auto row = w.row(i);
            if (grid.nearest()) {
                if (coefficient == T(0)) continue;  // Q(0) = 0
                // Vectorised Quantizer::nearest: (value * inv_step) rounded, times step, clipped.
                row.array() += inv_n * (((coefficient * xe.array()) * grid.inv_step).rint() * grid.step)
                                           .cwiseMax(-grid.alpha)
                                           .cwiseMin(grid.alpha);
            } else {
                for (Index j = 0; j < w.cols(); ++j) row(j) += inv_n * grid(coefficient * xe(j), rng);
            }
        }
        if (has_bias_) grid.add_to_bias(b.row(e), lr, inv_n, rng, targets[1]->row(0));
    }
}

template <class T>
std::vector<Matrix<T>*> DenseLayer<T>::parameters() {
    if (has_bias_) return {&weight_, &bias_};
    return {&weight_};
}

template <class T>
std::vector<const Matrix<T>*> DenseLayer<T>::parameters() const {
    if (has_bias_) return {&weight_, &bias_};
    return {&weight_};
}

template <class T>
void DenseLayer<T>::initialise(Init init, Rng& rng) {
    const double fan_in = static_cast<double>(weight_.cols());
    const double fan_out = static_cast<double>(weight_.rows());
    switch (init) {
        case Init::GlorotNormal: fill_normal(weight_, std::sqrt(2.0 / (fan_in + fan_out)), rng); break;
        case Init::HeNormal: fill_normal(weight_, std::sqrt(2.0 / fan_in), rng); break;
        case Init::LecunNormal: fill_normal(weight_, std::sqrt(1.0 / fan_in), rng); break;
        case Init::GlorotUniform: {
            const double limit = std::sqrt(6.0 / (fan_in + fan_out));
            for (Index i = 0; i < weight_.size(); ++i)
                weight_.data()[i] = static_cast<T>(limit * (2.0 * rng.uniform() - 1.0));
            break;
        }
    }
    bias_.setZero();
}

template class DenseLayer<float>;
template class DenseLayer<double>;
template void fill_normal<float>(Matrix<float>&, double, Rng&);
template void fill_normal<double>(Matrix<double>&, double, Rng&);

}  // namespace rbp
