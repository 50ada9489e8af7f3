/* The oneDNN plugin's interface: plain C, so that the core and the plugin (librbp_onednn.so, the only
 * part of rbp-native that links oneDNN) share no C++ types and no exceptions cross between them.
 *
 * The core opens the plugin when a float32 convolution first runs on it or a bf16 step begins
 * (cpp/src/onednn_plugin.cpp), so that importing rbp-native and training MLPs never loads oneDNN.
 * Every function returns 0 on success; otherwise the message of the failure is what `last_error`
 * returns on the same thread, until that thread's next call. */
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Raised whenever a function's signature or meaning changes: a plugin of another version is refused. */
#define RBP_ONEDNN_PLUGIN_VERSION 2

/* One convolution per example: input channels x height x width, filters, kernel, stride and the padding
 * on each side (cpp/src/conv_onednn.hpp). */
typedef struct RbpConvGeometry {
    int64_t channels, height, width;
    int64_t filters, out_height, out_width;
    int64_t kernel_h, kernel_w, stride;
    int64_t pad_top, pad_left, pad_bottom, pad_right;
    int bias;
} RbpConvGeometry;

typedef struct RbpOneDnnPlugin {
    int version;
    const char* (*last_error)(void);
    /* A convolution's cached primitives: created with its geometry, freed by conv_destroy. With bf16 != 0
     * a call rounds its two float32 inputs to bfloat16 (nearest even) on the way into oneDNN's layouts and
     * sums in float32 (outputs float32). The forward call adds the float32 bias; a bf16 backward_weights call
     * computes no bias gradient (bias_gradient must be null): oneDNN would sum the rounded signal, and the
     * core sums the float32 one. */
    int (*conv_create)(const RbpConvGeometry* geometry, void** convolution);
    void (*conv_destroy)(void* convolution);
    int (*conv_forward)(void* convolution, int64_t n, const float* x, int64_t x_stride, const float* kernel,
                        const float* bias, float* s, int64_t s_stride, int threads, int bf16);
    int (*conv_backward_data)(void* convolution, int64_t n, const float* g, int64_t g_stride, const float* kernel,
                              float* j, int64_t j_stride, int threads, int bf16);
    int (*conv_backward_weights)(void* convolution, int64_t n, const float* x, int64_t x_stride, const float* g,
                                 int64_t g_stride, float* kernel_gradient, float* bias_gradient, int threads, int bf16);
    /* c (m x n, row stride ldc) = alpha op(a) op(b) (+ c when accumulate), a and b bfloat16 bits, row-major
     * and dense: op(a) is m x k (a stored k x m when transpose_a), op(b) k x n. */
    int (*bf16_matmul)(float alpha, const uint16_t* a, int transpose_a, const uint16_t* b, int transpose_b, float* c,
                       int64_t m, int64_t n, int64_t k, int64_t ldc, int accumulate, int threads);
} RbpOneDnnPlugin;

/* The plugin's one exported symbol: its table, or null when the caller expects another version. */
const RbpOneDnnPlugin* rbp_onednn_plugin(int version);

#ifdef __cplusplus
}
#endif
