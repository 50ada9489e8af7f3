// Single-precision products without packing, for the AVX-512 and AVX2 builds (private to gemm.cpp).
//
// Eigen's kernel copies ("packs") both operands into panels before every product. For the small
// products of a training step (a batch of 32 to 128 against layers of 10 to 1000 units) the packing,
// and the narrower loops Eigen runs on the last rows when a dimension is not a multiple of the vector
// width (100 = 6 x 16 + 4), cost a fifth to a half of the product. These kernels read the operands in
// place, from register-sized blocks:
//
// - dot form, C = alpha A B^T (+ C): both operands are contiguous along the depth, so each entry of C
//   is a dot product; a block of C keeps one vector accumulator per entry over the depth, reduced at
//   the end. The forward product S = X W^T.
// - axpy form, C = alpha op(A) B (+ C) with B contiguous along C's rows: a block of rows by vectors of
//   C accumulates broadcast entries of op(A) times rows of B. The backward product J = G W
//   (op(A) = A) and the update W += s B^T X (op(A) = A^T).
//
// Both forms can also skip an operand's all-zero blocks (an input batch of mostly blank pixels): the
// caller marks, per row, which groups of kWidth consecutive columns hold a non-zero (one bit each,
// 64 per word). The dot form then skips the depth groups that are zero in every row of its row block,
// the update form (op(A) = A^T) the examples whose row of B is zero across the column block. A skipped
// term is an exact zero, so the sums are those of the full kernels.
//
// Block sizes fit the register file: 32 vector registers with AVX-512 (dot 4 x 4, axpy 6 x 4
// vectors), 16 with AVX2 (dot 3 x 3, axpy 6 x 2 vectors). Partial vectors at the right edge use
// masked loads and stores; nothing outside the operands is read or written. Which products take
// these kernels is decided in gemm.cpp (measured per shape and instruction set).
#pragma once

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define RBP_UNPACKED_GEMM 1

#include "rbp/types.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace rbp {
namespace unpacked {

#if defined(__AVX512F__)
struct Simd {
    using Vec = __m512;
    using Mask = __mmask16;
    static constexpr int width = 16;
    static constexpr int dot_block_rows = 4, dot_block_cols = 4;    // 16 accumulators + 4 + 1 operands
    static constexpr int axpy_block_rows = 6, axpy_block_vecs = 4;  // 24 accumulators + 4 + 1 operands
    static Mask full() { return 0xFFFF; }
    static Mask first(Index count) { return static_cast<Mask>((1u << count) - 1u); }
    static Vec zero() { return _mm512_setzero_ps(); }
    static Vec set1(float x) { return _mm512_set1_ps(x); }
    static Vec load(const float* p) { return _mm512_loadu_ps(p); }
    static Vec load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
    static void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
    static void store(float* p, Mask m, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
    static Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
    static Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
    static float sum(Vec v) { return _mm512_reduce_add_ps(v); }
    static bool nonzero(Vec v) { return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0; }
};
#else
struct Simd {
    using Vec = __m256;
    using Mask = __m256i;
    static constexpr int width = 8;
    static constexpr int dot_block_rows = 3, dot_block_cols = 3;    // 9 accumulators + 3 + 1 operands
    static constexpr int axpy_block_rows = 6, axpy_block_vecs = 2;  // 12 accumulators + 2 + 1 operands
    static Mask full() { return _mm256_set1_epi32(-1); }
    static Mask first(Index count) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static Vec zero() { return _mm256_setzero_ps(); }
    static Vec set1(float x) { return _mm256_set1_ps(x); }
    static Vec load(const float* p) { return _mm256_loadu_ps(p); }
    static Vec load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
    static void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
    static void store(float* p, Mask m, Vec v) { _mm256_maskstore_ps(p, m, v); }
    static Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
    static Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
    static float sum(Vec v) {
        const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        const __m128 pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
        return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)));
    }
    static bool nonzero(Vec v) { return _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ)) != 0; }
};
#endif

using Vec = Simd::Vec;
using Mask = Simd::Mask;
constexpr Index kWidth = Simd::width;
// Units (rows of B) per block of the dot form: a split between threads cuts at multiples of it.
constexpr Index kDotColumns = Simd::dot_block_cols;

// Depth handled per pass, so that the operand blocks a pass re-reads stay in the L1 cache.
constexpr Index kDotDepth = 1024;  // dot form: 2 x 4 rows x 4 KiB
constexpr Index kAxpyDepth = 128;  // axpy form: 128 rows x 64 columns of B = 32 KiB

// Zero-block masks: row i's word w is masks[i * stride + w]; bit b of word w covers the columns
// [(64 w + b) kWidth, (64 w + b + 1) kWidth). A dot-form depth pass covers whole words.
struct BlockMasks {
    const std::uint64_t* masks = nullptr;  // nullptr: no skipping
    Index stride = 0;
};
constexpr Index kMaskColumns = 64 * kWidth;  // columns covered by one mask word
static_assert(kDotDepth % kMaskColumns == 0, "a dot-form depth pass must cover whole mask words");
constexpr Index kMaxPassWords = kDotDepth / kMaskColumns;

#if defined(__AVX512F__)
// All 16 sums of a 4 x 4 block at once by pairwise unpack/shuffle additions: lane 4r + q of the
// result holds acc[r][q]'s sum.
inline __m512 sum16(const __m512 (&acc)[4][4]) {
    __m512 x[8];
    _Pragma("GCC unroll 8") for (int t = 0; t < 8; ++t) {
        const __m512 u = acc[t / 2][(t % 2) * 2], v = acc[t / 2][(t % 2) * 2 + 1];
        x[t] = _mm512_add_ps(_mm512_unpacklo_ps(u, v), _mm512_unpackhi_ps(u, v));
    }
    __m512 y[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < 4; ++t) {
        y[t] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * t], x[2 * t + 1], 0x44),
                             _mm512_shuffle_ps(x[2 * t], x[2 * t + 1], 0xEE));
    }
    const __m512 z0 = _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], 0x44), _mm512_shuffle_f32x4(y[0], y[1], 0xEE));
    const __m512 z1 = _mm512_add_ps(_mm512_shuffle_f32x4(y[2], y[3], 0x44), _mm512_shuffle_f32x4(y[2], y[3], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_f32x4(z0, z1, 0x88), _mm512_shuffle_f32x4(z0, z1, 0xDD));
}
#endif

// c[r][q] (+)= alpha * sum_p a[r][p] b[q][p] for an MR x NR block; a, b rows of length k.
// With Skip, only the depth groups set in `groups` (words of the groups non-zero in any of the
// block's rows) are read.
template <int MR, int NR, bool Skip>
inline void dot_block(Index k, const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc, float alpha,
                      bool accumulate, const std::uint64_t* groups) {
    Vec acc[MR][NR];
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; ++r) {
        _Pragma("GCC unroll 4") for (int q = 0; q < NR; ++q) acc[r][q] = Simd::zero();
    }
    // Full vectors load unmasked: AVX2's masked load is a slower instruction than a plain one (an
    // extra ALU micro-op beside the load, and no fusion with the FMA), even with every lane set.
    auto step = [&](Index p, auto load) {
        Vec bv[NR];
        _Pragma("GCC unroll 4") for (int q = 0; q < NR; ++q) bv[q] = load(b + q * ldb + p);
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; ++r) {
            const Vec av = load(a + r * lda + p);
            _Pragma("GCC unroll 4") for (int q = 0; q < NR; ++q) acc[r][q] = Simd::fma(av, bv[q], acc[r][q]);
        }
    };
    const auto unmasked = [](const float* x) { return Simd::load(x); };
    const Index full = k / kWidth * kWidth;
    bool tail = full < k;
    if constexpr (Skip) {
        const Index words = (k + kMaskColumns - 1) / kMaskColumns;
        for (Index w = 0; w < words; ++w) {
            for (std::uint64_t bits = groups[w]; bits != 0; bits &= bits - 1) {
                const Index q = (64 * w + __builtin_ctzll(bits)) * kWidth;
                if (q < full) step(q, unmasked);
            }
        }
        tail = tail && ((groups[full / kMaskColumns] >> (full / kWidth % 64)) & 1u) != 0;
    } else {
        (void)groups;
        for (Index p = 0; p < full; p += kWidth) step(p, unmasked);
    }
    if (tail) {
        const Mask lanes = Simd::first(k - full);
        step(full, [lanes](const float* x) { return Simd::load(x, lanes); });
    }

#if defined(__AVX512F__)
    if constexpr (MR == 4 && NR == 4) {
        alignas(64) float out[16];
        _mm512_store_ps(out, _mm512_mul_ps(_mm512_set1_ps(alpha), sum16(acc)));
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r) {
            const __m128 s = _mm_load_ps(out + 4 * r);
            float* row = c + r * ldc;
            _mm_storeu_ps(row, accumulate ? _mm_add_ps(_mm_loadu_ps(row), s) : s);
        }
        return;
    }
#endif
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; ++r) {
        _Pragma("GCC unroll 4") for (int q = 0; q < NR; ++q) {
            const float s = alpha * Simd::sum(acc[r][q]);
            float& out = c[r * ldc + q];
            out = accumulate ? out + s : s;
        }
    }
}

// Rows of C in blocks of Simd::dot_block_rows (then fewer) against one block of NR rows of B.
// With Skip, `zero` marks A's rows (the masks start at this depth pass's first word).
template <int NR, bool Skip>
inline void dot_rows(Index m, Index k, const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc,
                     float alpha, bool accumulate, BlockMasks zero) {
    constexpr int MR = Simd::dot_block_rows;
    std::uint64_t groups[kMaxPassWords];
    const Index words = (k + kMaskColumns - 1) / kMaskColumns;
    // The groups set in any of rows [i, i + rows) of A.
    auto block_groups = [&](Index i, Index rows) -> const std::uint64_t* {
        if constexpr (Skip) {
            for (Index w = 0; w < words; ++w) {
                std::uint64_t any = 0;
                for (Index r = 0; r < rows; ++r) any |= zero.masks[(i + r) * zero.stride + w];
                groups[w] = any;
            }
            return groups;
        } else {
            (void)i, (void)rows;
            return nullptr;
        }
    };
    Index i = 0;
    for (; i + MR <= m; i += MR)
        dot_block<MR, NR, Skip>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, alpha, accumulate, block_groups(i, MR));
    const float* ai = a + i * lda;
    float* ci = c + i * ldc;
    switch (m - i) {
        case 3: dot_block<3, NR, Skip>(k, ai, lda, b, ldb, ci, ldc, alpha, accumulate, block_groups(i, 3)); break;
        case 2: dot_block<2, NR, Skip>(k, ai, lda, b, ldb, ci, ldc, alpha, accumulate, block_groups(i, 2)); break;
        case 1: dot_block<1, NR, Skip>(k, ai, lda, b, ldb, ci, ldc, alpha, accumulate, block_groups(i, 1)); break;
        default: break;
    }
}

// gemm_nt with (Skip) or without skipping A's zero blocks.
template <bool Skip>
inline void dot_product(Index m, Index n, Index k, float alpha, const float* a, Index lda, const float* b, Index ldb,
                        float* c, Index ldc, bool accumulate, BlockMasks zero) {
    constexpr int NR = Simd::dot_block_cols;
    for (Index p = 0; p < k; p += kDotDepth) {
        const Index depth = std::min(kDotDepth, k - p);
        const bool add = accumulate || p > 0;
        const float* ap = a + p;
        const float* bp = b + p;
        BlockMasks pass = zero;
        if constexpr (Skip) pass.masks += p / kMaskColumns;
        Index j = 0;
        for (; j + NR <= n; j += NR)
            dot_rows<NR, Skip>(m, depth, ap, lda, bp + j * ldb, ldb, c + j, ldc, alpha, add, pass);
        switch (n - j) {
            case 3: dot_rows<3, Skip>(m, depth, ap, lda, bp + j * ldb, ldb, c + j, ldc, alpha, add, pass); break;
            case 2: dot_rows<2, Skip>(m, depth, ap, lda, bp + j * ldb, ldb, c + j, ldc, alpha, add, pass); break;
            case 1: dot_rows<1, Skip>(m, depth, ap, lda, bp + j * ldb, ldb, c + j, ldc, alpha, add, pass); break;
            default: break;
        }
    }
}

// C (m x n) = alpha A (m x k) B^T (+ C), B (n x k); all row-major with unit inner stride. With
// `zero`, A's zero blocks are skipped.
inline void gemm_nt(Index m, Index n, Index k, float alpha, const float* a, Index lda, const float* b, Index ldb,
                    float* c, Index ldc, bool accumulate, BlockMasks zero = {}) {
    if (zero.masks != nullptr)
        dot_product<true>(m, n, k, alpha, a, lda, b, ldb, c, ldc, accumulate, zero);
    else
        dot_product<false>(m, n, k, alpha, a, lda, b, ldb, c, ldc, accumulate, zero);
}

// Bit g of the result is set when columns [g kWidth, (g + 1) kWidth) of the row (`count` floats)
// hold a non-zero (NaN counts as non-zero), for the first 64 groups from `row`.
inline std::uint64_t nonzero_groups(const float* row, Index count) {
    std::uint64_t bits = 0;
    const Index groups = std::min<Index>(64, (count + kWidth - 1) / kWidth);
    for (Index g = 0; g < groups; ++g) {
        const Index lanes = std::min(kWidth, count - g * kWidth);
        const Vec v = lanes == kWidth ? Simd::load(row + g * kWidth) : Simd::load(row + g * kWidth, Simd::first(lanes));
        bits |= static_cast<std::uint64_t>(Simd::nonzero(v)) << g;
    }
    return bits;
}

// The depth indices (rows of B) an axpy block reads: all k, or the `count` listed.
struct DepthList {
    const Index* index = nullptr;  // nullptr: 0 .. k-1
    Index count = 0;
};

// c[r][:] (+)= alpha * sum_p a(r, p) b[p][:] for MR rows and NV vectors of columns, the last one
// restricted to `last` when PartialLast (full vectors load and store unmasked, as in dot_block);
// a(r, p) = a[r * a_row + p * a_depth].
template <int MR, int NV, bool PartialLast, bool Listed>
inline void axpy_block(Index k, const float* a, Index a_row, Index a_depth, const float* b, Index ldb, float* c,
                       Index ldc, float alpha, bool accumulate, Mask last, DepthList list) {
    Vec acc[MR][NV];
    _Pragma("GCC unroll 6") for (int r = 0; r < MR; ++r) {
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) acc[r][v] = Simd::zero();
    }
    auto step = [&](Index p) {
        const float* row = b + p * ldb;
        Vec bv[NV];
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) {
            bv[v] = PartialLast && v + 1 == NV ? Simd::load(row + kWidth * v, last) : Simd::load(row + kWidth * v);
        }
        _Pragma("GCC unroll 6") for (int r = 0; r < MR; ++r) {
            const Vec av = Simd::set1(a[r * a_row + p * a_depth]);
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) acc[r][v] = Simd::fma(av, bv[v], acc[r][v]);
        }
    };
    // Separate instantiations: a select inside the dense loop cost it 5-13% (measured).
    if constexpr (Listed) {
        for (Index t = 0; t < list.count; ++t) step(list.index[t]);
    } else {
        (void)list;
        for (Index p = 0; p < k; ++p) step(p);
    }
    const Vec scale = Simd::set1(alpha);
    _Pragma("GCC unroll 6") for (int r = 0; r < MR; ++r) {
        float* row = c + r * ldc;
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) {
            float* out = row + kWidth * v;
            if (PartialLast && v + 1 == NV) {
                Simd::store(
                    out, last,
                    accumulate ? Simd::fma(scale, acc[r][v], Simd::load(out, last)) : Simd::mul(scale, acc[r][v]));
            } else {
                Simd::store(out,
                            accumulate ? Simd::fma(scale, acc[r][v], Simd::load(out)) : Simd::mul(scale, acc[r][v]));
            }
        }
    }
}

// Rows of C in blocks of Simd::axpy_block_rows (then fewer) against one column block of NV vectors.
template <int NV, bool PartialLast, bool Listed>
inline void axpy_rows(Index m, Index k, const float* a, Index a_row, Index a_depth, const float* b, Index ldb, float* c,
                      Index ldc, float alpha, bool accumulate, Mask last, DepthList list) {
    constexpr int MR = Simd::axpy_block_rows;
    Index i = 0;
    for (; i + MR <= m; i += MR)
        axpy_block<MR, NV, PartialLast, Listed>(k, a + i * a_row, a_row, a_depth, b, ldb, c + i * ldc, ldc, alpha,
                                                accumulate, last, list);
    const float* ai = a + i * a_row;
    float* ci = c + i * ldc;
    auto rest = [&](auto rows) {
        axpy_block<decltype(rows)::value, NV, PartialLast, Listed>(k, ai, a_row, a_depth, b, ldb, ci, ldc, alpha,
                                                                   accumulate, last, list);
    };
    switch (m - i) {
        case 5: rest(std::integral_constant<int, 5>{}); break;
        case 4: rest(std::integral_constant<int, 4>{}); break;
        case 3: rest(std::integral_constant<int, 3>{}); break;
        case 2: rest(std::integral_constant<int, 2>{}); break;
        case 1: rest(std::integral_constant<int, 1>{}); break;
        default: break;
    }
}

// gemm_axpy with (Listed) or without the rows of B listed per column block.
template <bool Listed>
inline void axpy_product(Index m, Index n, Index k, float alpha, const float* a, Index a_row, Index a_depth,
                         const float* b, Index ldb, float* c, Index ldc, bool accumulate, BlockMasks zero) {
    constexpr int NV = Simd::axpy_block_vecs;
    static_assert(64 % NV == 0, "a column block's mask bits must lie in one word");
    Index listed[kAxpyDepth];
    for (Index p = 0; p < k; p += kAxpyDepth) {
        const Index depth = std::min(kAxpyDepth, k - p);
        const bool add = accumulate || p > 0;
        const float* ap = a + p * a_depth;
        const float* bp = b + p * ldb;
        // The rows of this pass that hold a non-zero in columns [j, j + vectors * kWidth).
        auto rows_of = [&](Index j, Index vectors) -> DepthList {
            if constexpr (Listed) {
                const Index group = j / kWidth;
                const std::uint64_t bits = ((std::uint64_t{1} << vectors) - 1) << (group % 64);
                Index count = 0;
                for (Index q = 0; q < depth; ++q)
                    if ((zero.masks[(p + q) * zero.stride + group / 64] & bits) != 0) listed[count++] = q;
                return {listed, count};
            } else {
                (void)j, (void)vectors;
                return {};
            }
        };
        // A block with no listed row leaves an accumulated C as it is.
        auto idle = [&](const DepthList& list) { return Listed && add && list.count == 0; };
        Index j = 0;
        for (; j + kWidth * NV <= n; j += kWidth * NV) {
            const DepthList list = rows_of(j, NV);
            if (!idle(list))
                axpy_rows<NV, false, Listed>(m, depth, ap, a_row, a_depth, bp + j, ldb, c + j, ldc, alpha, add,
                                             Simd::full(), list);
        }
        const Index rest = n - j;
        if (rest == 0) continue;
        const Index vectors = (rest + kWidth - 1) / kWidth;  // up to NV, the last one partial
        const Mask last = Simd::first(rest - kWidth * (vectors - 1));
        const DepthList list = rows_of(j, vectors);
        if (idle(list)) continue;
        static_assert(NV <= 4, "the column remainder is dispatched for up to 4 vectors");
        auto edge = [&](auto count) {
            axpy_rows<decltype(count)::value, true, Listed>(m, depth, ap, a_row, a_depth, bp + j, ldb, c + j, ldc,
                                                            alpha, add, last, list);
        };
        switch (vectors) {
            case 4: edge(std::integral_constant<int, 4>{}); break;
            case 3: edge(std::integral_constant<int, 3>{}); break;
            case 2: edge(std::integral_constant<int, 2>{}); break;
            default: edge(std::integral_constant<int, 1>{}); break;
        }
    }
}

// C (m x n) = alpha op(A) B (+ C), B (k x n) row-major; op(A)(i, p) = a[i * a_row + p * a_depth]
// (A itself: a_row = lda, a_depth = 1; A^T: a_row = 1, a_depth = lda). With `zero` (marks of B's
// rows), each column block reads only the rows of B that are non-zero in it.
inline void gemm_axpy(Index m, Index n, Index k, float alpha, const float* a, Index a_row, Index a_depth,
                      const float* b, Index ldb, float* c, Index ldc, bool accumulate, BlockMasks zero = {}) {
    if (zero.masks != nullptr)
        axpy_product<true>(m, n, k, alpha, a, a_row, a_depth, b, ldb, c, ldc, accumulate, zero);
    else
        axpy_product<false>(m, n, k, alpha, a, a_row, a_depth, b, ldb, c, ldc, accumulate, zero);
}

// Sparse rows: the first layer's input batch with its zeros left out, for products whose cost follows
// the non-zeros (MNIST: about 19% of the pixels) rather than the depth. The rows come in pairs (groups
// of kSparseGroup) that share their columns: group q lists, in order, the columns where any of its rows
// is non-zero (columns[q * capacity + e], e < counts[q]) and each row's values there, zeros included
// (values[(q * kSparseGroup + r) * capacity + e]). Each weight row that a product reads for an entry
// then serves both rows. The products are bound by the cache traffic of those weight rows, and two MNIST
// images have 24% fewer such columns than non-zeros; groups of four (49% fewer) made the forward
// product bound by its multiply-adds, half of them with zeros, and no faster overall on Zen 4.
constexpr int kSparseGroup = 2;
// Vectors of units per pass, for the group's accumulators (update: alpha B) in registers: a 64-unit
// panel in one pass with AVX-512, two with AVX2.
constexpr Index kSparseUnitVectors = 4;

// Room a row of `count` columns needs: compress_group stores whole vectors past the last entry.
inline Index sparse_row_capacity(Index count) { return (count + 2 * kWidth - 1) / kWidth * kWidth; }

// Copies a group's non-zeros (rows[r] points at `count` floats; null: a row of zeros past the end of the
// batch; NaN counts as non-zero) with their columns; row r's values go to values + r * value_stride.
// Returns the number of columns. Writes at most sparse_row_capacity(count) entries of each output.
inline Index compress_group(const float* const* rows, Index count, float* values, Index value_stride,
                            std::int32_t* columns) {
    Index entries = 0;
#if defined(__AVX512F__)
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (Index j = 0; j < count; j += kWidth) {
        const __mmask16 in = count - j >= kWidth ? Simd::full() : Simd::first(count - j);
        __m512 v[kSparseGroup];
        __mmask16 nonzero = 0;
        _Pragma("GCC unroll 4") for (int r = 0; r < kSparseGroup; ++r) {
            v[r] = rows[r] != nullptr ? _mm512_maskz_loadu_ps(in, rows[r] + j) : _mm512_setzero_ps();
            nonzero |= _mm512_mask_cmp_ps_mask(in, v[r], _mm512_setzero_ps(), _CMP_NEQ_UQ);
        }
        // Compress in a register and store the whole vector: the store form of vcompress is
        // microcoded and slow on AMD's Zen 4.
        _Pragma("GCC unroll 4") for (int r = 0; r < kSparseGroup; ++r)
            _mm512_storeu_ps(values + r * value_stride + entries, _mm512_maskz_compress_ps(nonzero, v[r]));
        const __m512i index = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(j)), lanes);
        _mm512_storeu_si512(columns + entries, _mm512_maskz_compress_epi32(nonzero, index));
        entries += __builtin_popcount(nonzero);
    }
#else
    for (Index j = 0; j < count; j += kWidth) {
        const Index len = std::min(kWidth, count - j);
        unsigned bits = 0;
        for (int r = 0; r < kSparseGroup; ++r) {
            if (rows[r] == nullptr) continue;
            const Vec v = len == kWidth ? Simd::load(rows[r] + j) : Simd::load(rows[r] + j, Simd::first(len));
            bits |= static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ)));
        }
        bits &= (1u << len) - 1u;
        while (bits != 0) {
            const int lane = __builtin_ctz(bits);
            for (int r = 0; r < kSparseGroup; ++r)
                values[r * value_stride + entries] = rows[r] != nullptr ? rows[r][j + lane] : 0.0f;
            columns[entries] = static_cast<std::int32_t>(j + lane);
            ++entries;
            bits &= bits - 1u;
        }
    }
#endif
    return entries;
}

// The first ROWS rows of a group of S (+)= X W for NV vectors of units: s_r[v] (+)= sum_e values_r[e]
// w[columns[e]][v], each row's sum in column order (its zeros included: they add nothing). The last
// vector is stored under `last` (S's row may end there); W's rows are read whole (the caller pads them).
template <int NV, int ROWS>
inline void sparse_forward_group(Index entries, const float* values, Index value_stride, const std::int32_t* columns,
                                 const float* w, Index ldw, float* s, Index lds, Mask last, bool accumulate) {
    Vec acc[ROWS][NV];
    _Pragma("GCC unroll 4") for (int r = 0; r < ROWS; ++r) {
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) {
            const float* at = s + r * lds + v * kWidth;
            if (!accumulate)
                acc[r][v] = Simd::zero();
            else
                acc[r][v] = v + 1 < NV ? Simd::load(at) : Simd::load(at, last);
        }
    }
    for (Index e = 0; e < entries; ++e) {
        const float* row = w + static_cast<Index>(columns[e]) * ldw;
        Vec weights[NV];
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) weights[v] = Simd::load(row + v * kWidth);
        _Pragma("GCC unroll 4") for (int r = 0; r < ROWS; ++r) {
            const Vec x = Simd::set1(values[r * value_stride + e]);
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) acc[r][v] = Simd::fma(x, weights[v], acc[r][v]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < ROWS; ++r) {
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) {
            if (v + 1 < NV)
                Simd::store(s + r * lds + v * kWidth, acc[r][v]);
            else
                Simd::store(s + r * lds + v * kWidth, last, acc[r][v]);
        }
    }
}

// The share of a group's first ROWS rows of W += alpha X^T B for NV vectors of units: w[columns[e]][v] +=
// values_r[e] (alpha b_r[v]) for the rows r in order, so that every weight sums its terms in example
// order. Each weight row is read and written once for the group. b's last vector counts as zero past
// `last`, so W's padding stays zero.
template <int NV, int ROWS>
inline void sparse_update_group(Index entries, const float* values, Index value_stride, const std::int32_t* columns,
                                const float* b, Index ldb, Mask last, float alpha, float* w, Index ldw) {
    Vec g[ROWS][NV];
    const Vec scale = Simd::set1(alpha);
    _Pragma("GCC unroll 4") for (int r = 0; r < ROWS; ++r) {
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) {
            const float* at = b + r * ldb + v * kWidth;
            g[r][v] = Simd::mul(scale, v + 1 < NV ? Simd::load(at) : Simd::load(at, last));
        }
    }
    for (Index e = 0; e < entries; ++e) {
        float* row = w + static_cast<Index>(columns[e]) * ldw;
        Vec x[ROWS];
        _Pragma("GCC unroll 4") for (int r = 0; r < ROWS; ++r) x[r] = Simd::set1(values[r * value_stride + e]);
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; ++v) {
            Vec sum = Simd::load(row + v * kWidth);
            _Pragma("GCC unroll 4") for (int r = 0; r < ROWS; ++r) sum = Simd::fma(x[r], g[r][v], sum);
            Simd::store(row + v * kWidth, sum);
        }
    }
}

// Calls body(std::integral_constant<int, NV>, first unit, mask of the last vector) for the passes over
// `units` units, kSparseUnitVectors vectors at most each.
template <class Body>
inline void sparse_unit_passes(Index units, const Body& body) {
    for (Index u = 0; u < units; u += kSparseUnitVectors * kWidth) {
        const Index len = std::min(kSparseUnitVectors * kWidth, units - u);
        const Index vectors = (len + kWidth - 1) / kWidth;
        const Index tail = len - (vectors - 1) * kWidth;
        const Mask last = tail == kWidth ? Simd::full() : Simd::first(tail);
        switch (vectors) {
            case 4: body(std::integral_constant<int, 4>{}, u, last); break;
            case 3: body(std::integral_constant<int, 3>{}, u, last); break;
            case 2: body(std::integral_constant<int, 2>{}, u, last); break;
            default: body(std::integral_constant<int, 1>{}, u, last); break;
        }
    }
}
static_assert(kSparseUnitVectors == 4, "sparse_unit_passes dispatches up to 4 vectors");

// Calls body(std::integral_constant<int, ROWS>, group, its first row) for the groups of m rows: whole
// groups, and the last one's ROWS rows when m is not a multiple of kSparseGroup.
template <class Body>
inline void sparse_groups(Index m, const Body& body) {
    static_assert(kSparseGroup == 2, "sparse_groups dispatches groups of up to 2 rows");
    Index q = 0;
    for (; (q + 1) * kSparseGroup <= m; ++q) body(std::integral_constant<int, kSparseGroup>{}, q, q * kSparseGroup);
    if (q * kSparseGroup < m) body(std::integral_constant<int, 1>{}, q, q * kSparseGroup);
}

// S (m x units, row-major) (+)= X W, X in sparse row groups, W (k x ldw: a panel of gemm.hpp's transposed
// weights, its rows padded with zeros to whole vectors past `units`).
inline void sparse_forward(Index m, Index units, const float* values, const std::int32_t* columns, const Index* counts,
                           Index capacity, const float* w, Index ldw, float* s, Index lds, bool accumulate) {
    sparse_unit_passes(units, [&](auto nv, Index u, Mask last) {
        sparse_groups(m, [&](auto rows, Index q, Index first) {
            sparse_forward_group<decltype(nv)::value, decltype(rows)::value>(
                counts[q], values + first * capacity, capacity, columns + q * capacity, w + u, ldw, s + first * lds + u,
                lds, last, accumulate);
        });
    });
}

// W (k x ldw) += alpha X^T B over `units` columns, X in sparse row groups (m rows), B (m x units). The
// groups in order, so that every entry of W sums its terms in example order however it is split.
inline void sparse_update(Index m, Index units, float alpha, const float* b, Index ldb, const float* values,
                          const std::int32_t* columns, const Index* counts, Index capacity, float* w, Index ldw) {
    sparse_unit_passes(units, [&](auto nv, Index u, Mask last) {
        sparse_groups(m, [&](auto rows, Index q, Index first) {
            sparse_update_group<decltype(nv)::value, decltype(rows)::value>(
                counts[q], values + first * capacity, capacity, columns + q * capacity, b + first * ldb + u, ldb, last,
                alpha, w + u, ldw);
        });
    });
}

}  // namespace unpacked
}  // namespace rbp

#else
#define RBP_UNPACKED_GEMM 0
#endif
