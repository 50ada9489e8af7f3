// What the oneDNN paths share (private to the core; only included where RBP_HAVE_ONEDNN is defined):
// the CPU engine and the thread-count scope around primitive creation and execution.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rbp::onednn_detail {

inline dnnl::engine& cpu_engine() {
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

// oneDNN's OpenMP runtime sizes its parallel regions by omp_get_max_threads() of the calling thread,
// when a primitive is created and when it runs: set it to the call's budget for the scope.
class OmpThreads {
public:
    explicit OmpThreads(int threads) {
#ifdef _OPENMP
        saved_ = omp_get_max_threads();
        omp_set_num_threads(threads);
#else
        (void)threads;
#endif
    }
    ~OmpThreads() {
#ifdef _OPENMP
        omp_set_num_threads(saved_);
#endif
    }
    OmpThreads(const OmpThreads&) = delete;
    OmpThreads& operator=(const OmpThreads&) = delete;

private:
    int saved_ = 1;
};

}  // namespace rbp::onednn_detail
