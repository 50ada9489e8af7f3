// Single-precision convolutions through oneDNN (built when CMake finds it), in the oneDNN plugin
// (cpp/onednn/convolution.cpp), opened when a layer first runs on it (onednn_plugin.hpp).
//
// oneDNN's direct convolutions in its blocked layouts ran at about twice the speed of im2col + GEMM
// here (benchmarks/README.md, "Convolutions"); the layer's tensors stay NCHW (a batch row is one image
// in C, H, W order), so each call reorders into and out of the blocked layouts, which costs a few
// percent. One object per layer caches its primitives per (batch size, thread budget): creating them
// takes milliseconds, and oneDNN fixes a primitive's thread count when it is created, so a cached
// primitive is only reused under the same budget. Calls on one object are serialised (the scratch
// tensors of a cached primitive are shared).
#pragma once

#include "onednn_plugin.hpp"
#include "rbp/types.hpp"

#include <memory>

namespace rbp {

// Geometry of one convolution (per example): input channels x height x width, filters, kernel, stride
// and the padding on each side.
using ConvGeometry = RbpConvGeometry;

class OneDnnConvolution {
public:
    // Opens nothing yet: the plugin and the primitives come with the first call.
    explicit OneDnnConvolution(const ConvGeometry& geometry);
    ~OneDnnConvolution();
    OneDnnConvolution(const OneDnnConvolution&) = delete;
    OneDnnConvolution& operator=(const OneDnnConvolution&) = delete;

    // Row-major buffers: x (n, C*H*W), kernel (filters, C*kh*kw), bias (filters), s (n, filters*oh*ow);
    // the rows of x, s, g and j are `*_stride` floats apart. `threads`: the thread budget of the call.
    // `bf16`: both inputs of the call rounded to bfloat16, float32 sums and outputs (plugin_api.h).
    void forward(Index n, const float* x, Index x_stride, const float* kernel, const float* bias, float* s,
                 Index s_stride, int threads, bool bf16);
    // j = the transposed convolution of g with the kernel (j is overwritten).
    void backward_data(Index n, const float* g, Index g_stride, const float* kernel, float* j, Index j_stride,
                       int threads, bool bf16);
    // kernel_gradient = sum over examples and positions of g (x) patches, bias_gradient = sums of g
    // (null when the layer has no bias, and in a bf16 call); both dense and overwritten.
    void backward_weights(Index n, const float* x, Index x_stride, const float* g, Index g_stride,
                          float* kernel_gradient, float* bias_gradient, int threads, bool bf16);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rbp
