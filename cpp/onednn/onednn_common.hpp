// What the plugin's two parts share: the CPU engine and the thread-count scope around primitive creation
// and execution.
#pragma once

#include "plugin_api.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <memory>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rbp::onednn {

using Index = std::int64_t;

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

// A cached convolution (convolution.cpp): the plugin's conv_* functions call these. `bf16`: the inputs
// rounded to bfloat16 on the way into the primitive's layout, float32 sums and outputs (plugin_api.h).
class Convolution {
public:
    explicit Convolution(const RbpConvGeometry& geometry);
    ~Convolution();
    Convolution(const Convolution&) = delete;
    Convolution& operator=(const Convolution&) = delete;
    void forward(Index n, const float* x, Index x_stride, const float* kernel, const float* bias, float* s,
                 Index s_stride, int threads, bool bf16);
    void backward_data(Index n, const float* g, Index g_stride, const float* kernel, float* j, Index j_stride,
                       int threads, bool bf16);
    void backward_weights(Index n, const float* x, Index x_stride, const float* g, Index g_stride,
                          float* kernel_gradient, float* bias_gradient, int threads, bool bf16);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The plugin's bf16_matmul (bf16_matmul.cpp).
void bf16_matmul(float alpha, const std::uint16_t* a, bool transpose_a, const std::uint16_t* b, bool transpose_b,
                 float* c, Index m, Index n, Index k, Index ldc, bool accumulate, int threads);

}  // namespace rbp::onednn
