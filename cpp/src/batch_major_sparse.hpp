// Batch-major kernels for sparse matrices (CSR/CSC) against dense batches: the sparse layers'
// products (sparse_layer.cpp) and the learning channel's sparse feedback (channel_signal.cpp). Internal to
// the core's sources.
#pragma once

#include "rbp/parallel.hpp"
#include "rbp/types.hpp"

#include <algorithm>
#include <vector>

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

// PacketBlock<Packet16f, 16> drops the vector type's alignment attribute from the template argument,
// which is harmless here (the packets live in registers) but warns.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"

// The transposes between a row-major batch and a batch-major buffer go by square tiles of one packet
// per row, transposed in registers (Eigen's ptranspose: 16 x 16 floats with AVX-512); Eigen's
// assignment of a transposed view moves one scalar at a time, which made the two transposes cost
// more than the whole sparse product at 1% density. Edge columns that do not fill a tile stay scalar.

// buffer (cols, ld) = m^T, zero in the padding columns n .. ld.
template <class T>
void transpose_into(T* buffer, Index ld, const ConstMatrixRef<T>& m) {
    using namespace Eigen::internal;
    using P = Packet<T>;
    constexpr Index S = packet_size<T>;
    const Index n = m.rows(), cols = m.cols(), lm = m.outerStride();
    const Index tiled_cols = cols / S * S;
    for (Index r = 0; r < ld; r += S) {
        const Index rows = std::min(S, n - r);  // the rest of the tile is padding
        for (Index c = 0; c < tiled_cols; c += S) {
            PacketBlock<P, S> tile;
            for (Index i = 0; i < S; ++i)
                tile.packet[i] = i < rows ? ploadu<P>(m.data() + (r + i) * lm + c) : pset1<P>(T(0));
            ptranspose(tile);
            for (Index i = 0; i < S; ++i) pstore(buffer + (c + i) * ld + r, tile.packet[i]);
        }
        for (Index c = tiled_cols; c < cols; ++c)
            for (Index i = 0; i < S; ++i) buffer[c * ld + r + i] = i < rows ? m(r + i, c) : T(0);
    }
}

// m = buffer (m.cols(), ld)^T, for the first m.rows() columns of the buffer.
template <class T>
void transpose_from(const T* buffer, Index ld, MatrixRef<T> m) {
    using namespace Eigen::internal;
    using P = Packet<T>;
    constexpr Index S = packet_size<T>;
    const Index n = m.rows(), cols = m.cols(), lm = m.outerStride();
    const Index tiled_cols = cols / S * S;
    for (Index r = 0; r < n; r += S) {
        const Index rows = std::min(S, n - r);
        for (Index c = 0; c < tiled_cols; c += S) {
            PacketBlock<P, S> tile;
            for (Index i = 0; i < S; ++i) tile.packet[i] = pload<P>(buffer + (c + i) * ld + r);
            ptranspose(tile);
            for (Index i = 0; i < rows; ++i) pstoreu(m.data() + (r + i) * lm + c, tile.packet[i]);
        }
        for (Index i = 0; i < rows; ++i)
            for (Index c = tiled_cols; c < cols; ++c) m(r + i, c) = buffer[c * ld + r + i];
    }
}

#pragma GCC diagnostic pop

// Threads for a kernel of `macs` multiply-accumulates over `rows` independent output rows: the
// policy of parallel.hpp (the dense products' budget and thresholds), so that a kernel is split only
// when every thread gets enough work to hide the fork/join and a late time slice.
inline int loop_threads(Index macs, Index rows) {
    const int budget = product_thread_budget();
    if (budget <= 1) return 1;
    const auto by_work =
        static_cast<Index>(static_cast<double>(macs) / min_macs_per_thread().load(std::memory_order_relaxed));
    const Index by_shape = rows / kMinSplitPerThread;
    return static_cast<int>(std::max<Index>(1, std::min<Index>({static_cast<Index>(budget), by_work, by_shape})));
}

// The stored entries k in [begin, end) of one row of W (CSR) or one column (CSC): value(k) and the
// transposed-operand row it multiplies.
template <class T, class I = Index>
struct RowEntries {  // forward: S^T row i = b_i + sum_k w_k X^T[col_k]
    const T* values;
    const I* index;
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

// out (n x out.cols()) = the batch-major product of x (n x k) with a sparse matrix whose stored entries
// for output i are [starts[i], starts[i + 1]): X^T and OUT^T in the scratch buffers, one axpy_row
// of length ld per output, starting from init[i] (0 when init is null). make_entries(xt, ld) gives
// the entries over X^T. Each output's sum runs over its entries in stored order, whatever the
// thread count; `nnz` (the stored entries) sizes the thread split.
template <class T, class I, class MakeEntries>
void batch_major_product(const ConstMatrixRef<T>& x, const I* starts, const T* init, Index nnz,
                         const MakeEntries& make_entries, MatrixRef<T> out) {
    const Index n = x.rows(), outputs = out.cols();
    if (n == 0) return;
    const Index ld = padded<T>(n);
    Scratch<T>& buffers = scratch<T>();
    T* xt = grow(buffers.first, x.cols() * ld);  // X^T (k, ld)
    T* ot = grow(buffers.second, outputs * ld);  // OUT^T (outputs, ld)
    transpose_into(xt, ld, x);
    const auto entries = make_entries(static_cast<const T*>(xt), ld);
    const int threads = loop_threads(n * nnz, outputs);
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads) if (threads > 1)
    for (Index i = 0; i < outputs; ++i)
        axpy_row(ot + i * ld, ld, init ? init[i] : T(0), static_cast<Index>(starts[i]),
                 static_cast<Index>(starts[i + 1]), entries);
    transpose_from(ot, ld, out);
}

// s = x W^T (+ bias) for W (s.cols() x x.cols()) in CSR (row_ptr, col, values; bias may be null).
template <class T, class I>
void csr_times_transpose(const ConstMatrixRef<T>& x, const I* row_ptr, const I* col, const T* values, const T* bias,
                         Index nnz, MatrixRef<T> s) {
    batch_major_product<T>(
        x, row_ptr, bias, nnz, [&](const T* xt, Index ld) { return RowEntries<T, I>{values, col, xt, ld}; }, s);
}

}  // namespace sparse_kernels

}  // namespace rbp
