// Single-precision products without packing, for the AVX-512 build (private to gemm.cpp).
//
// Eigen's kernel copies ("packs") both operands into panels before every product. For the small
// products of a training step (a batch of 32 to 128 against layers of 10 to 1000 units) the packing,
// and the quarter-width loops Eigen runs on the last rows when a dimension is not a multiple of 16
// (100 = 6 x 16 + 4), cost a fifth to a half of the product. These kernels read the operands in
// place, from registers-sized blocks:
//
// - dot form, C = alpha A B^T (+ C): both operands are contiguous along the depth, so each entry of C
//   is a dot product; a 4 x 4 block of C keeps 16 vector accumulators over the depth, reduced at the
//   end. The forward product S = X W^T.
// - axpy form, C = alpha op(A) B (+ C) with B contiguous along C's rows: a block of up to 6 rows by 4
//   vectors (64 columns) of C accumulates broadcast entries of op(A) times rows of B. The backward
//   product J = G W (op(A) = A) and the update W += s B^T X (op(A) = A^T).
//
// Partial vectors at the right edge use masked loads and stores; nothing outside the operands is
// read or written. Which products take these kernels is decided in gemm.cpp (measured per shape).
#pragma once

#if defined(__AVX512F__)
#define RBP_UNPACKED_GEMM 1

#include "rbp/types.hpp"

#include <immintrin.h>

#include <algorithm>

namespace rbp {
namespace unpacked {

// Depth handled per pass, so that the operand blocks a pass re-reads stay in the L1 cache.
constexpr Index kDotDepth = 1024;  // dot form: 2 x 4 rows x 4 KiB
constexpr Index kAxpyDepth = 128;  // axpy form: 128 rows x 64 columns of B = 32 KiB

inline __mmask16 first_lanes(Index count) { return static_cast<__mmask16>((1u << count) - 1u); }

// c[r][q] (+)= alpha * sum_p a[r][p] b[q][p] for an MR x NR block; a, b rows of length k.
template <int MR, int NR>
inline void dot_block(Index k, const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc, float alpha,
                      bool accumulate) {
    __m512 acc[MR][NR];
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; ++r) {
        _Pragma("GCC unroll 4") for (int q = 0; q < NR; ++q) acc[r][q] = _mm512_setzero_ps();
    }
    auto step = [&](Index p, __mmask16 lanes) {
        __m512 bv[NR];
        _Pragma("GCC unroll 4") for (int q = 0; q < NR; ++q) bv[q] = _mm512_maskz_loadu_ps(lanes, b + q * ldb + p);
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; ++r) {
            const __m512 av = _mm512_maskz_loadu_ps(lanes, a + r * lda + p);
            _Pragma("GCC unroll 4") for (int q = 0; q < NR; ++q) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
        }
    };
    const Index full = k / 16 * 16;
    Index p = 0;
    for (; p < full; p += 16) step(p, 0xFFFF);
    if (p < k) step(p, first_lanes(k - p));

    if constexpr (MR == 4 && NR == 4) {
        // All 16 sums at once by pairwise unpack/shuffle additions: lane 4r + q holds acc[r][q]'s sum.
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
        const __m512 z0 =
            _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], 0x44), _mm512_shuffle_f32x4(y[0], y[1], 0xEE));
        const __m512 z1 =
            _mm512_add_ps(_mm512_shuffle_f32x4(y[2], y[3], 0x44), _mm512_shuffle_f32x4(y[2], y[3], 0xEE));
        const __m512 sums = _mm512_mul_ps(
            _mm512_set1_ps(alpha),
            _mm512_add_ps(_mm512_shuffle_f32x4(z0, z1, 0x88), _mm512_shuffle_f32x4(z0, z1, 0xDD)));
        alignas(64) float out[16];
        _mm512_store_ps(out, sums);
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; ++r) {
            const __m128 s = _mm_load_ps(out + 4 * r);
            float* row = c + r * ldc;
            _mm_storeu_ps(row, accumulate ? _mm_add_ps(_mm_loadu_ps(row), s) : s);
        }
    } else {
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; ++r) {
            _Pragma("GCC unroll 4") for (int q = 0; q < NR; ++q) {
                const float s = alpha * _mm512_reduce_add_ps(acc[r][q]);
                float& out = c[r * ldc + q];
                out = accumulate ? out + s : s;
            }
        }
    }
}

// Rows of C in blocks of 4 (then 3, 2, 1) against one block of NR rows of B.
template <int NR>
inline void dot_rows(Index m, Index k, const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc,
                     float alpha, bool accumulate) {
    Index i = 0;
    for (; i + 4 <= m; i += 4) dot_block<4, NR>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, alpha, accumulate);
    switch (m - i) {
        case 3: dot_block<3, NR>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, alpha, accumulate); break;
        case 2: dot_block<2, NR>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, alpha, accumulate); break;
        case 1: dot_block<1, NR>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, alpha, accumulate); break;
        default: break;
    }
}

// C (m x n) = alpha A (m x k) B^T (+ C), B (n x k); all row-major with unit inner stride.
inline void gemm_nt(Index m, Index n, Index k, float alpha, const float* a, Index lda, const float* b, Index ldb,
                    float* c, Index ldc, bool accumulate) {
    for (Index p = 0; p < k; p += kDotDepth) {
        const Index depth = std::min(kDotDepth, k - p);
        const bool add = accumulate || p > 0;
        const float* ap = a + p;
        const float* bp = b + p;
        Index j = 0;
        for (; j + 4 <= n; j += 4) dot_rows<4>(m, depth, ap, lda, bp + j * ldb, ldb, c + j, ldc, alpha, add);
        switch (n - j) {
            case 3: dot_rows<3>(m, depth, ap, lda, bp + j * ldb, ldb, c + j, ldc, alpha, add); break;
            case 2: dot_rows<2>(m, depth, ap, lda, bp + j * ldb, ldb, c + j, ldc, alpha, add); break;
            case 1: dot_rows<1>(m, depth, ap, lda, bp + j * ldb, ldb, c + j, ldc, alpha, add); break;
            default: break;
        }
    }
}

// c[r][:] (+)= alpha * sum_p a(r, p) b[p][:] for MR rows and NV vectors of 16 columns, the last one
// restricted to `last`; a(r, p) = a[r * a_row + p * a_depth].
template <int MR, int NV>
inline void axpy_block(Index k, const float* a, Index a_row, Index a_depth, const float* b, Index ldb, float* c,
                       Index ldc, float alpha, bool accumulate, __mmask16 last) {
    __m512 acc[MR][NV];
    _Pragma("GCC unroll 6") for (int r = 0; r < MR; ++r) {
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
    }
    for (Index p = 0; p < k; ++p) {
        const float* row = b + p * ldb;
        __m512 bv[NV];
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) {
            bv[v] = v + 1 < NV ? _mm512_loadu_ps(row + 16 * v) : _mm512_maskz_loadu_ps(last, row + 16 * v);
        }
        _Pragma("GCC unroll 6") for (int r = 0; r < MR; ++r) {
            const __m512 av = _mm512_set1_ps(a[r * a_row + p * a_depth]);
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    const __m512 scale = _mm512_set1_ps(alpha);
    _Pragma("GCC unroll 6") for (int r = 0; r < MR; ++r) {
        float* row = c + r * ldc;
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; ++v) {
            const __mmask16 lanes = v + 1 < NV ? __mmask16(0xFFFF) : last;
            const __m512 out = accumulate ? _mm512_fmadd_ps(scale, acc[r][v], _mm512_maskz_loadu_ps(lanes, row + 16 * v))
                                          : _mm512_mul_ps(scale, acc[r][v]);
            _mm512_mask_storeu_ps(row + 16 * v, lanes, out);
        }
    }
}

// Rows of C in blocks of 6 (then 5 ... 1) against one column block of NV vectors.
template <int NV>
inline void axpy_rows(Index m, Index k, const float* a, Index a_row, Index a_depth, const float* b, Index ldb,
                      float* c, Index ldc, float alpha, bool accumulate, __mmask16 last) {
    Index i = 0;
    for (; i + 6 <= m; i += 6)
        axpy_block<6, NV>(k, a + i * a_row, a_row, a_depth, b, ldb, c + i * ldc, ldc, alpha, accumulate, last);
    const float* ai = a + i * a_row;
    float* ci = c + i * ldc;
    switch (m - i) {
        case 5: axpy_block<5, NV>(k, ai, a_row, a_depth, b, ldb, ci, ldc, alpha, accumulate, last); break;
        case 4: axpy_block<4, NV>(k, ai, a_row, a_depth, b, ldb, ci, ldc, alpha, accumulate, last); break;
        case 3: axpy_block<3, NV>(k, ai, a_row, a_depth, b, ldb, ci, ldc, alpha, accumulate, last); break;
        case 2: axpy_block<2, NV>(k, ai, a_row, a_depth, b, ldb, ci, ldc, alpha, accumulate, last); break;
        case 1: axpy_block<1, NV>(k, ai, a_row, a_depth, b, ldb, ci, ldc, alpha, accumulate, last); break;
        default: break;
    }
}

// C (m x n) = alpha op(A) B (+ C), B (k x n) row-major; op(A)(i, p) = a[i * a_row + p * a_depth]
// (A itself: a_row = lda, a_depth = 1; A^T: a_row = 1, a_depth = lda).
inline void gemm_axpy(Index m, Index n, Index k, float alpha, const float* a, Index a_row, Index a_depth,
                      const float* b, Index ldb, float* c, Index ldc, bool accumulate) {
    for (Index p = 0; p < k; p += kAxpyDepth) {
        const Index depth = std::min(kAxpyDepth, k - p);
        const bool add = accumulate || p > 0;
        const float* ap = a + p * a_depth;
        const float* bp = b + p * ldb;
        Index j = 0;
        for (; j + 64 <= n; j += 64)
            axpy_rows<4>(m, depth, ap, a_row, a_depth, bp + j, ldb, c + j, ldc, alpha, add, 0xFFFF);
        const Index rest = n - j;
        if (rest == 0) continue;
        const Index vectors = (rest + 15) / 16;
        const __mmask16 last = first_lanes(rest - 16 * (vectors - 1));
        switch (vectors) {
            case 3: axpy_rows<3>(m, depth, ap, a_row, a_depth, bp + j, ldb, c + j, ldc, alpha, add, last); break;
            case 2: axpy_rows<2>(m, depth, ap, a_row, a_depth, bp + j, ldb, c + j, ldc, alpha, add, last); break;
            default: axpy_rows<1>(m, depth, ap, a_row, a_depth, bp + j, ldb, c + j, ldc, alpha, add, last); break;
        }
    }
}

}  // namespace unpacked
}  // namespace rbp

#else
#define RBP_UNPACKED_GEMM 0
#endif
