#include "rbp/gemm.hpp"

#include "rbp/parallel.hpp"

#include <algorithm>
#include <cstddef>

// Eigen's level-3 kernels are called directly (Eigen::internal, stable through the 3.4 series);
// with any other Eigen the products fall back to Eigen's expressions.
#if EIGEN_VERSION_AT_LEAST(3, 4, 0) && !EIGEN_VERSION_AT_LEAST(3, 4, 90)
#define RBP_DIRECT_GEMM 1
#else
#define RBP_DIRECT_GEMM 0
#endif

namespace rbp {
namespace {

// op(a) op(b) through Eigen's expressions: matrix-vector shapes, tiny products, other Eigen versions.
template <class T, class A, class B>
void expression_product(T alpha, const A& a, const B& b, MatrixRef<T>& c, bool accumulate) {
    if (accumulate)
        c.noalias() += alpha * (a * b);
    else
        c.noalias() = alpha * (a * b);
}

template <class T>
void expression_gemm(T alpha, const ConstMatrixRef<T>& a, bool ta, const ConstMatrixRef<T>& b, bool tb,
                     MatrixRef<T>& c, bool accumulate) {
    if (ta && tb)
        expression_product(alpha, a.transpose(), b.transpose(), c, accumulate);
    else if (ta)
        expression_product(alpha, a.transpose(), b, c, accumulate);
    else if (tb)
        expression_product(alpha, a, b.transpose(), c, accumulate);
    else
        expression_product(alpha, a, b, c, accumulate);
}

#if RBP_DIRECT_GEMM

// Packing buffers of the calling thread, grown on demand and kept until the thread ends.
template <class T>
struct PackingBuffer {
    T* data = nullptr;
    std::size_t size = 0;
    T* reserve(std::size_t n) {
        if (n > size) {
            Eigen::internal::aligned_free(data);
            data = static_cast<T*>(Eigen::internal::aligned_malloc(n * sizeof(T)));
            size = n;
        }
        return data;
    }
    ~PackingBuffer() { Eigen::internal::aligned_free(data); }
};

// Eigen's cache blocking for one sequential product, pointing at the thread's buffers.
template <class T>
class Blocking : public Eigen::internal::level3_blocking<T, T> {
public:
    Blocking(Index rows, Index cols, Index depth) {
        this->m_mc = rows;
        this->m_nc = cols;
        this->m_kc = depth;
        Eigen::internal::computeProductBlockingSizes<T, T, 1>(this->m_kc, this->m_mc, this->m_nc, Index(1));
        thread_local PackingBuffer<T> a, b;
        this->m_blockA = a.reserve(static_cast<std::size_t>(this->m_kc * this->m_mc));
        this->m_blockB = b.reserve(static_cast<std::size_t>(this->m_kc * this->m_nc));
    }
};

// Column-major res (rows x cols) += alpha * lhs (rows x depth) * rhs (depth x cols).
template <class T, int LhsOrder, int RhsOrder>
void colmajor_gemm(Index rows, Index cols, Index depth, const T* lhs, Index lhs_stride, const T* rhs, Index rhs_stride,
                   T* res, Index res_stride, T alpha) {
    Blocking<T> blocking(rows, cols, depth);
    Eigen::internal::general_matrix_matrix_product<Index, T, LhsOrder, false, T, RhsOrder, false, Eigen::ColMajor,
                                                   1>::run(rows, cols, depth, lhs, lhs_stride, rhs, rhs_stride, res, 1,
                                                           res_stride, alpha, blocking, nullptr);
}

// c += alpha * op(a) op(b) on this thread. Row-major C = op(A) op(B) is column-major
// C^T = op(B)^T op(A)^T, whose operands are B and A read with the opposite storage order.
template <class T>
void serial_gemm(T alpha, const ConstMatrixRef<T>& a, bool ta, const ConstMatrixRef<T>& b, bool tb, MatrixRef<T> c) {
    constexpr int Row = Eigen::RowMajor, Col = Eigen::ColMajor;
    const Index m = c.rows(), n = c.cols(), k = ta ? a.rows() : a.cols();
    const T* pa = a.data();
    const T* pb = b.data();
    const Index sa = a.outerStride(), sb = b.outerStride();
    if (tb) {
        if (ta)
            colmajor_gemm<T, Row, Row>(n, m, k, pb, sb, pa, sa, c.data(), c.outerStride(), alpha);
        else
            colmajor_gemm<T, Row, Col>(n, m, k, pb, sb, pa, sa, c.data(), c.outerStride(), alpha);
    } else {
        if (ta)
            colmajor_gemm<T, Col, Row>(n, m, k, pb, sb, pa, sa, c.data(), c.outerStride(), alpha);
        else
            colmajor_gemm<T, Col, Col>(n, m, k, pb, sb, pa, sa, c.data(), c.outerStride(), alpha);
    }
}

#endif  // RBP_DIRECT_GEMM

}  // namespace

template <class T>
void gemm(T alpha, const ConstMatrixRef<T>& a, bool ta, const ConstMatrixRef<T>& b, bool tb, MatrixRef<T> c,
          bool accumulate) {
    const Index m = c.rows(), n = c.cols(), k = ta ? a.rows() : a.cols();
    eigen_assert((ta ? a.cols() : a.rows()) == m && (tb ? b.cols() : b.rows()) == n && (tb ? b.rows() : b.cols()) == k);
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate) c.setZero();
        return;
    }
#if RBP_DIRECT_GEMM
    // Matrix-vector shapes, outer products and tiny products: Eigen's own kernels allocate nothing.
    if (m == 1 || n == 1 || k == 1 || m + n + k < 20) {
        expression_gemm(alpha, a, ta, b, tb, c, accumulate);
        return;
    }
    if (!accumulate) c.setZero();
    const int threads = product_threads(m, n, k, product_thread_budget());
    if (threads <= 1) {
        serial_gemm(alpha, a, ta, b, tb, c);
        return;
    }
    // Split the larger output dimension: every thread packs all of the other operand, so this
    // duplicates the smaller packing. Chunks are multiples of 16 rows/columns (a full AVX-512 packet).
    const bool split_rows = m >= n;
    const Index extent = split_rows ? m : n;
    const Index chunk = ((extent + threads - 1) / threads + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; ++t) {
        const Index lo = std::min(extent, static_cast<Index>(t) * chunk);
        const Index len = std::min(extent, lo + chunk) - lo;
        if (len <= 0) continue;
        if (split_rows) {
            if (ta)
                serial_gemm<T>(alpha, a.middleCols(lo, len), ta, b, tb, c.middleRows(lo, len));
            else
                serial_gemm<T>(alpha, a.middleRows(lo, len), ta, b, tb, c.middleRows(lo, len));
        } else {
            if (tb)
                serial_gemm<T>(alpha, a, ta, b.middleRows(lo, len), tb, c.middleCols(lo, len));
            else
                serial_gemm<T>(alpha, a, ta, b.middleCols(lo, len), tb, c.middleCols(lo, len));
        }
    }
#else
    expression_gemm(alpha, a, ta, b, tb, c, accumulate);
#endif
}

template void gemm<float>(float, const ConstMatrixRef<float>&, bool, const ConstMatrixRef<float>&, bool,
                          MatrixRef<float>, bool);
template void gemm<double>(double, const ConstMatrixRef<double>&, bool, const ConstMatrixRef<double>&, bool,
                           MatrixRef<double>, bool);

}  // namespace rbp
