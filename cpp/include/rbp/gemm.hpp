// Matrix products of the core: C = alpha * op(A) op(B) (+ C), on row-major views.
//
// Eigen's expression `c.noalias() = a * b.transpose()` allocates its packing buffers on every call
// once they exceed 128 KiB (EIGEN_STACK_ALLOCATION_LIMIT); glibc then grows and trims the heap on
// each product, and the page faults cost more than the product itself for the MNIST net's first
// layer at batch 128 (about 2x). gemm() calls the same Eigen kernels with packing buffers that
// live as long as the thread, and splits large products between threads by the policy of
// parallel.hpp. Vector shapes (a batch of one) go to Eigen's matrix-vector kernels.
#pragma once

#include "rbp/types.hpp"

namespace rbp {

// c = alpha * op(a) op(b) when `accumulate` is false, c += alpha * op(a) op(b) when true, where
// op(x) is x or its transpose. Shapes: op(a) (m x k), op(b) (k x n), c (m x n); c must not
// overlap a or b. Uses up to product_thread_budget() threads (see parallel.hpp).
template <class T>
void gemm(T alpha, const ConstMatrixRef<T>& a, bool transpose_a, const ConstMatrixRef<T>& b, bool transpose_b,
          MatrixRef<T> c, bool accumulate);

}  // namespace rbp
