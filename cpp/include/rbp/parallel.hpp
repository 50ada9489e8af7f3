// Threading policy of the core's matrix products and elementwise sweeps.
//
// Splitting a product between threads costs a fork/join (microseconds on an idle machine) and, when
// another process keeps a core busy, a wait for a time slice (milliseconds): with Eigen's own policy
// (parallelise any product above ~50k multiply-accumulates per thread) two threads were up to 100x
// slower than one for the MNIST net on a shared 2-core machine. Here a product is split only when
// each thread gets enough work to hide that cost, and along the output dimension that duplicates the
// least packing, within the calling thread's budget (ThreadBudget below).
#pragma once

#include "rbp/types.hpp"

#include <algorithm>
#include <atomic>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rbp {

// Multiply-accumulates each thread must get before a product is split (measured on a 2-core
// AVX-512 machine: below ~4M MACs per thread two threads did not pay, see benchmarks/README.md).
constexpr double kMinMacsPerThread = 4.0e6;
// The threshold in force: kMinMacsPerThread unless a benchmark sets another (process-wide, for the
// A/B runs of benchmarks/kernels_ab.py; not meant to change while products run).
inline std::atomic<double>& min_macs_per_thread() {
    static std::atomic<double> macs{kMinMacsPerThread};
    return macs;
}
// Rows (or columns) of the output each thread must get.
constexpr Index kMinSplitPerThread = 32;

// The thread budget of the products: set per call, for the calling thread, by a ThreadBudget scope
// (the trainer opens one with its own `threads` around every call), and read by gemm(), the sparse
// kernels and the elementwise sweeps (for_row_blocks) on that thread. It is thread_local, so two
// trainers trained at the same time from two threads never see each other's budget. Outside any
// scope the budget is every core OpenMP offers. Eigen's own threading is kept at one thread (the
// module sets Eigen::setNbThreads(1) once when it loads), so every product that does not go through
// gemm() is sequential and this policy is the only one in force.
inline int& product_threads_setting() {
    thread_local int threads = 0;  // 0: no scope open on this thread
    return threads;
}
inline int product_thread_budget() {
    const int set = product_threads_setting();
#ifdef _OPENMP
    return set > 0 ? set : omp_get_max_threads();
#else
    return set > 0 ? set : 1;
#endif
}

// Sets the calling thread's product budget for the scope's lifetime and restores the previous one.
class ThreadBudget {
public:
    explicit ThreadBudget(int threads) : saved_(product_threads_setting()) { product_threads_setting() = threads; }
    ~ThreadBudget() { product_threads_setting() = saved_; }
    ThreadBudget(const ThreadBudget&) = delete;
    ThreadBudget& operator=(const ThreadBudget&) = delete;

private:
    int saved_;
};

// Threads for C (m x n) = op(A) (m x k) op(B) (k x n), at most `budget`.
inline int product_threads(Index m, Index n, Index k, int budget) {
    if (budget <= 1) return 1;
    const double macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    const Index split = std::max(m, n);
    const auto by_work = static_cast<Index>(macs / min_macs_per_thread().load(std::memory_order_relaxed));
    const Index by_shape = split / kMinSplitPerThread;
    return static_cast<int>(std::max<Index>(1, std::min<Index>({static_cast<Index>(budget), by_work, by_shape})));
}

// Threads for the first layer's products on inputs with blank blocks (gemm_skipping_zeros_forward and
// _update), which both cut W's units, or on the input's non-zeros (gemm_sparse_forward and _update,
// which both cut the weights' panels), and for the trainer's copy or compression of the batch beside
// them: one count, from the dense forward product's shape, so that their parts agree on any budget.
inline int first_layer_threads(Index batch, Index units, Index inputs) {
    return product_threads(batch, units, inputs, product_thread_budget());
}

// The start of part `t` of `threads` consecutive parts of [0, extent): the multiple of `granule` nearest
// to t * extent / threads, at most `extent` (which ends the last part). Rounding each boundary to the
// nearest granule, rather than every part up to a whole number of them, keeps the parts as equal as the
// granule allows: 1000 columns in granules of 16 go 496 + 504, where whole parts went 512 + 488. Every
// part before the last non-empty one is a whole number of granules; parts may be empty.
inline Index split_boundary(Index extent, int threads, Index granule, int t) {
    if (t >= threads) return extent;
    const Index step = static_cast<Index>(threads) * granule;
    return std::min(extent, (2 * static_cast<Index>(t) * extent + step) / (2 * step) * granule);
}

// The longest of those parts.
inline Index split_part_length(Index extent, int threads, Index granule) {
    Index longest = 0;
    for (int t = 0; t < std::max(threads, 1); ++t)
        longest = std::max(
            longest, split_boundary(extent, threads, granule, t + 1) - split_boundary(extent, threads, granule, t));
    return longest;
}

// part(lo, len) on `threads` threads for consecutive parts of [0, extent), one per thread (the parts of
// split_boundary; an empty part is not called), in a fixed split: the same thread
// count gives the same parts. The granule is what the work inside a part needs whole: 16 columns (a full
// AVX-512 packet) of a row-major matrix, the unpacked dot kernel's block of units, 1 for independent rows
// (a 100-unit layer's rows went 64 + 36 with 16, leaving one thread waiting).
template <class Part>
void split_between_threads(Index extent, int threads, Index granule, const Part& part) {
    if (threads <= 1) {
        part(Index(0), extent);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; ++t) {
        const Index lo = split_boundary(extent, threads, granule, t);
        const Index len = split_boundary(extent, threads, granule, t + 1) - lo;
        if (len > 0) part(lo, len);
    }
}
// The granules of the products' splits: a row-major output's columns are its vectorised dimension.
constexpr Index kColumnGranule = 16;

// Elementwise work (f and f' of a layer, f' times the channel's signal, the bias rows before a
// product) is split only when each thread gets this many values, so that the fork/join (microseconds,
// or a time slice on a busy machine) stays small next to the sweep. The wide net's 1000-unit layers
// split from batch 66 on, the MNIST net's 100-unit layers from batch 656. Measured whole epochs, two
// threads: the wide net 1-3% faster at batch 128, no change at batch 32 even when split (16k values
// per thread) nor on the MNIST net (benchmarks/README.md, "What was tried").
constexpr Index kMinElementsPerThread = 32768;
// The threshold in force (settable for benchmarks and tests, as min_macs_per_thread).
inline std::atomic<Index>& min_elements_per_thread() {
    static std::atomic<Index> elements{kMinElementsPerThread};
    return elements;
}
// Row blocks are multiples of 16 rows: in a contiguous row-major float matrix whose first row sits on
// a 64-byte boundary, every block then starts on one, so each block's vectorised sweep runs the same
// packets as a sweep of the whole matrix (no scalar peel or tail in the middle).
constexpr Index kElementwiseRowBlock = 16;

// Threads for elementwise work on `rows` x `cols` values, within the calling thread's budget.
inline int elementwise_threads(Index rows, Index cols) {
    const int budget = product_thread_budget();
    if (budget <= 1) return 1;
    const Index blocks = (rows + kElementwiseRowBlock - 1) / kElementwiseRowBlock;
    const Index by_work = rows * cols / min_elements_per_thread().load(std::memory_order_relaxed);
    return static_cast<int>(std::max<Index>(1, std::min<Index>({static_cast<Index>(budget), by_work, blocks})));
}

// fn(first_row, end_row) over consecutive row blocks, one per thread (elementwise_threads), in a
// fixed split: the same thread count gives the same blocks.
template <class F>
void for_row_blocks(Index rows, Index cols, F&& fn) {
    split_between_threads(rows, elementwise_threads(rows, cols), kElementwiseRowBlock,
                          [&](Index first, Index count) { fn(first, first + count); });
}

}  // namespace rbp
