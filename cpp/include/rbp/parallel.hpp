// Threading policy of the core's matrix products.
//
// Splitting a product between threads costs a fork/join (microseconds on an idle machine) and, when
// another process keeps a core busy, a wait for a time slice (milliseconds): with Eigen's own policy
// (parallelise any product above ~50k multiply-accumulates per thread) two threads were up to 100x
// slower than one for the MNIST net on a shared 2-core machine. Here a product is split only when
// each thread gets enough work to hide that cost, and along the output dimension that duplicates the
// least packing. The thread budget is Eigen::nbThreads(), which the trainer sets from `threads`.
#pragma once

#include "rbp/types.hpp"

#include <algorithm>

namespace rbp {

// Multiply-accumulates each thread must get before a product is split (measured on a 2-core
// AVX-512 machine: below ~4M MACs per thread two threads did not pay, see benchmarks/README.md).
constexpr double kMinMacsPerThread = 4.0e6;
// Rows (or columns) of the output each thread must get.
constexpr Index kMinSplitPerThread = 32;

// The thread budget of gemm(): set by the trainer (set_product_threads), else Eigen::nbThreads().
// Keeping Eigen itself at one thread (Eigen::setNbThreads(1)) makes every product that does not go
// through gemm() sequential, so this policy is the only one in force.
inline int& product_threads_setting() {
    static int threads = 0;  // 0: not set
    return threads;
}
inline void set_product_threads(int threads) { product_threads_setting() = threads; }
inline int product_thread_budget() {
    const int set = product_threads_setting();
    return set > 0 ? set : Eigen::nbThreads();
}

// Threads for C (m x n) = op(A) (m x k) op(B) (k x n), at most `budget`.
inline int product_threads(Index m, Index n, Index k, int budget) {
    if (budget <= 1) return 1;
    const double macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    const Index split = std::max(m, n);
    const auto by_work = static_cast<Index>(macs / kMinMacsPerThread);
    const Index by_shape = split / kMinSplitPerThread;
    return static_cast<int>(std::max<Index>(1, std::min<Index>({static_cast<Index>(budget), by_work, by_shape})));
}

}  // namespace rbp
