#include "rbp/sparse_layer.hpp"

#include "rbp/parallel.hpp"

#include <algorithm>

namespace rbp {

// A named namespace (not an anonymous one): the core may be compiled as one unity translation unit.
namespace sparse_kernels {

// The kernels work on batch-major ("transposed") copies of their operands: row r of X^T, G^T or B^T
// holds one feature for every example, padded with zeros to a multiple `ld` of the SIMD packet
// size. Each stored entry of W then costs one contiguous axpy or dot product of length ld. The
// copies live in per-thread scratch buffers that only grow, so a training loop allocates nothing
// after its first batch and const methods stay safe to call from several threads at once.
template <class T>
using AlignedVector = std::vector<T, Eigen::aligned_allocator<T>>;

template <class T>
struct Scratch {
    AlignedVector<T> first;
    AlignedVector<T> second;
};

template <class T>
Scratch<T>& scratch() {
    static thread_local Scratch<T> buffers;
    return buffers;
}

template <class T>
T* grow(AlignedVector<T>& buffer, Index size) {
    if (static_cast<Index>(buffer.size()) < size) buffer.resize(static_cast<std::size_t>(size));
    return buffer.data();
}

template <class T>
using Packet = typename Eigen::internal::packet_traits<T>::type;
template <class T>
constexpr Index packet_size = Eigen::internal::unpacket_traits<Packet<T>>::size;

// Leading dimension of a transposed buffer for a batch of n: n rounded up to whole packets.
template <class T>
Index padded(Index n) {
    return (n + packet_size<T> - 1) / packet_size<T> * packet_size<T>;
}

template <class T>
using Strided = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstStrided = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;

// buffer (cols, ld) = m^T, zero in the padding columns.
template <class T>
void transpose_into(T* buffer, Index ld, const ConstMatrixRef<T>& m) {
    const Index n = m.rows();
    const Index cols = m.cols();
    Strided<T>(buffer, cols, n, Eigen::OuterStride<>(ld)).noalias() = m.transpose();
    if (ld > n) Strided<T>(buffer + n, cols, ld - n, Eigen::OuterStride<>(ld)).setZero();
}

// Threads for a kernel of `macs` multiply-accumulates over `rows` independent output rows: the
// policy of parallel.hpp (the dense products' budget and thresholds), so that a kernel is split only
// when every thread gets enough work to hide the fork/join and a late time slice.
inline int loop_threads(Index macs, Index rows) {
    const int budget = product_thread_budget();
    if (budget <= 1) return 1;
    const auto by_work = static_cast<Index>(static_cast<double>(macs) / kMinMacsPerThread);
    const Index by_shape = rows / kMinSplitPerThread;
    return static_cast<int>(std::max<Index>(1, std::min<Index>({static_cast<Index>(budget), by_work, by_shape})));
}

// The stored entries k in [begin, end) of one row of W (CSR) or one column (CSC): value(k) and the
// transposed-operand row it multiplies.
template <class T>
struct RowEntries {  // forward: S^T row i = b_i + sum_k w_k X^T[col_k]
    const T* values;
    const Index* index;
    const T* operand;
    Index ld;
    T value(Index k) const { return values[k]; }
    const T* source(Index k) const { return operand + index[k] * ld; }
};

template <class T>
struct ColumnEntries {  // adjoint: J^T row j = sum_k w_{pos_k} G^T[row_k]
    const T* values;
    const Index* position;
    const Index* index;
    const T* operand;
    Index ld;
    T value(Index k) const { return values[position[k]]; }
    const T* source(Index k) const { return operand + index[k] * ld; }
};

// out[c .. c + U*S) = init + sum_k value(k) * source(k)[c .. c + U*S): U packets of the output stay
// in registers while the entries stream by.
template <int U, class T, class Entries>
inline void axpy_block(T* out, Index c, T init, Index begin, Index end, const Entries& entries) {
    using namespace Eigen::internal;
    using P = Packet<T>;
    constexpr Index S = packet_size<T>;
    P acc[U];
    for (int u = 0; u < U; ++u) acc[u] = pset1<P>(init);
    for (Index k = begin; k < end; ++k) {
        const P v = pset1<P>(entries.value(k));
        const T* src = entries.source(k) + c;
        for (int u = 0; u < U; ++u) acc[u] = pmadd(v, pload<P>(src + u * S), acc[u]);
    }
    for (int u = 0; u < U; ++u) pstore(out + c + u * S, acc[u]);
}

// Output packets held in registers at once: 12 of the 16 vector registers of SSE2/AVX2, 24 of the
// 32 of AVX-512 (the rest hold the broadcast weight and the loads).
#ifdef EIGEN_VECTORIZE_AVX512
constexpr int max_block = 24;
#else
constexpr int max_block = 12;
#endif

template <class T, class Entries, int U = 1>
void axpy_dispatch(int packets, T* out, Index c, T init, Index begin, Index end, const Entries& entries) {
    if constexpr (U < max_block) {
        if (packets != U) return axpy_dispatch<T, Entries, U + 1>(packets, out, c, init, begin, end, entries);
    }
    axpy_block<U>(out, c, init, begin, end, entries);
}

// out[0 .. ld) = init + sum_k value(k) * source(k): as few passes over the entries as the registers
// allow, the packets shared evenly between the passes.
template <class T, class Entries>
void axpy_row(T* out, Index ld, T init, Index begin, Index end, const Entries& entries) {
    constexpr Index S = packet_size<T>;
    const Index packets = ld / S;
    const Index passes = (packets + max_block - 1) / max_block;
    Index c = 0;
    for (Index pass = 0; pass < passes; ++pass) {
        const Index u = packets / passes + (pass < packets % passes ? 1 : 0);
        axpy_dispatch<T, Entries>(static_cast<int>(u), out, c, init, begin, end, entries);
        c += u * S;
    }
}

// target[k .. k+G) += scale * <b, source(k + g)>: G dot products share each load of b. Small groups
// split each dot into A interleaved partial sums so that at least 4 multiply-adds are in flight.
template <int G, class T>
inline void dot_group(const T* b, Index ld, const Index* index, const T* operand, Index k, T scale, T* target) {
    using namespace Eigen::internal;
    using P = Packet<T>;
    constexpr Index S = packet_size<T>;
    constexpr int A = G >= 4 ? 1 : (G >= 2 ? 2 : 4);
    P acc[G][A];
    const T* x[G];
    for (int g = 0; g < G; ++g) {
        for (int a = 0; a < A; ++a) acc[g][a] = pset1<P>(T(0));
        x[g] = operand + index[k + g] * ld;
    }
    Index c = 0;
    for (; c + A * S <= ld; c += A * S) {
        for (int a = 0; a < A; ++a) {
            const P bv = pload<P>(b + c + a * S);
            for (int g = 0; g < G; ++g) acc[g][a] = pmadd(bv, pload<P>(x[g] + c + a * S), acc[g][a]);
        }
    }
    for (; c < ld; c += S) {
        const P bv = pload<P>(b + c);
        for (int g = 0; g < G; ++g) acc[g][0] = pmadd(bv, pload<P>(x[g] + c), acc[g][0]);
    }
    for (int g = 0; g < G; ++g) {
        P sum = acc[g][0];
        for (int a = 1; a < A; ++a) sum = padd(sum, acc[g][a]);
        target[k + g] += scale * predux(sum);
    }
}

// The update of one row's entries [begin, end): groups of 8, then one group of the rest.
template <class T>
void dot_row(const T* b, Index ld, const Index* index, const T* operand, Index begin, Index end, T scale, T* target) {
    Index k = begin;
    for (; k + 8 <= end; k += 8) dot_group<8>(b, ld, index, operand, k, scale, target);
    switch (end - k) {
        case 7: dot_group<7>(b, ld, index, operand, k, scale, target); break;
        case 6: dot_group<6>(b, ld, index, operand, k, scale, target); break;
        case 5: dot_group<5>(b, ld, index, operand, k, scale, target); break;
        case 4: dot_group<4>(b, ld, index, operand, k, scale, target); break;
        case 3: dot_group<3>(b, ld, index, operand, k, scale, target); break;
        case 2: dot_group<2>(b, ld, index, operand, k, scale, target); break;
        case 1: dot_group<1>(b, ld, index, operand, k, scale, target); break;
        default: break;
    }
}

}  // namespace sparse_kernels

template <class T>
SparseLayer<T>::SparseLayer(Index inputs, Index outputs, bool bias, double density, Rng& mask_rng)
    : inputs_(inputs), outputs_(outputs), density_(density), has_bias_(bias) {
    require(inputs > 0 && outputs > 0, "layer sizes must be positive");
    require(density > 0.0 && density <= 1.0,
            "connection density must lie in (0, 1], got " + std::to_string(density));
    row_ptr_.assign(static_cast<std::size_t>(outputs + 1), 0);
    col_.reserve(static_cast<std::size_t>(density * static_cast<double>(inputs) * static_cast<double>(outputs) * 1.05) + 16);
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
    for (Index j = 0; j < inputs_; ++j) col_ptr_[static_cast<std::size_t>(j + 1)] += col_ptr_[static_cast<std::size_t>(j)];
    csc_row_.assign(static_cast<std::size_t>(nnz), 0);
    csc_pos_.assign(static_cast<std::size_t>(nnz), 0);
    std::vector<Index> next(col_ptr_.begin(), col_ptr_.end() - 1);
    for (Index i = 0; i < outputs_; ++i) {
        for (Index k = row_ptr_[static_cast<std::size_t>(i)]; k < row_ptr_[static_cast<std::size_t>(i + 1)]; ++k) {
            const auto slot = static_cast<std::size_t>(next[static_cast<std::size_t>(col_[static_cast<std::size_t>(k)])]++);
            csc_row_[slot] = i;
            csc_pos_[slot] = k;
        }
    }
}

template <class T>
void SparseLayer<T>::forward(const ConstMatrixRef<T>& x, MatrixRef<T> s) const {
    using namespace sparse_kernels;
    const Index n = x.rows();
    if (n == 0) return;
    const Index ld = padded<T>(n);
    Scratch<T>& buffers = scratch<T>();
    T* xt = grow(buffers.first, inputs_ * ld);    // X^T (n_in, ld)
    T* st = grow(buffers.second, outputs_ * ld);  // S^T (n_out, ld)
    transpose_into(xt, ld, x);
    const RowEntries<T> entries{values_.data(), col_.data(), xt, ld};
    const Index* row_ptr = row_ptr_.data();
    const T* bias = has_bias_ ? bias_.data() : nullptr;
#pragma omp parallel for schedule(dynamic, 16) num_threads(loop_threads(n * nnz(), outputs_))
    for (Index i = 0; i < outputs_; ++i)
        axpy_row(st + i * ld, ld, bias ? bias[i] : T(0), row_ptr[i], row_ptr[i + 1], entries);
    s.noalias() = ConstStrided<T>(st, outputs_, n, Eigen::OuterStride<>(ld)).transpose();
}

template <class T>
void SparseLayer<T>::backward(const ConstMatrixRef<T>& g, MatrixRef<T> j) const {
    using namespace sparse_kernels;
    const Index n = g.rows();
    if (n == 0) return;
    const Index ld = padded<T>(n);
    Scratch<T>& buffers = scratch<T>();
    T* gt = grow(buffers.first, outputs_ * ld);  // G^T (n_out, ld)
    T* jt = grow(buffers.second, inputs_ * ld);  // J^T (n_in, ld)
    transpose_into(gt, ld, g);
    const ColumnEntries<T> entries{values_.data(), csc_pos_.data(), csc_row_.data(), gt, ld};
    const Index* col_ptr = col_ptr_.data();
#pragma omp parallel for schedule(dynamic, 16) num_threads(loop_threads(n * nnz(), inputs_))
    for (Index c = 0; c < inputs_; ++c) axpy_row(jt + c * ld, ld, T(0), col_ptr[c], col_ptr[c + 1], entries);
    j.noalias() = ConstStrided<T>(jt, inputs_, n, Eigen::OuterStride<>(ld)).transpose();
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
#pragma omp parallel for schedule(dynamic, 16) num_threads(loop_threads(n * nnz(), outputs_))
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
