// The plugin's C table (plugin_api.h): every entry catches what oneDNN or the allocator throws and keeps
// its message for last_error, so that no exception crosses into the core.
#include "onednn_common.hpp"

#include <exception>
#include <new>
#include <string>

namespace rbp::onednn {
namespace {

thread_local std::string error_message;

template <class Body>
int guarded(const Body& body) {
    try {
        body();
        return 0;
    } catch (const dnnl::error& e) {
        error_message = std::string("oneDNN: ") + e.what() + " (status " + std::to_string(int(e.status)) + ")";
    } catch (const std::bad_alloc&) {
        error_message = "oneDNN plugin: out of memory";
    } catch (const std::exception& e) {
        error_message = std::string("oneDNN plugin: ") + e.what();
    } catch (...) {
        error_message = "oneDNN plugin: unknown error";
    }
    return 1;
}

const char* last_error() { return error_message.c_str(); }

int conv_create(const RbpConvGeometry* geometry, void** convolution) {
    return guarded([&] { *convolution = new Convolution(*geometry); });
}

void conv_destroy(void* convolution) { delete static_cast<Convolution*>(convolution); }

int conv_forward(void* convolution, Index n, const float* x, Index x_stride, const float* kernel, const float* bias,
                 float* s, Index s_stride, int threads, int bf16) {
    return guarded([&] {
        static_cast<Convolution*>(convolution)->forward(n, x, x_stride, kernel, bias, s, s_stride, threads, bf16 != 0);
    });
}

int conv_backward_data(void* convolution, Index n, const float* g, Index g_stride, const float* kernel, float* j,
                       Index j_stride, int threads, int bf16) {
    return guarded([&] {
        static_cast<Convolution*>(convolution)->backward_data(n, g, g_stride, kernel, j, j_stride, threads, bf16 != 0);
    });
}

int conv_backward_weights(void* convolution, Index n, const float* x, Index x_stride, const float* g, Index g_stride,
                          float* kernel_gradient, float* bias_gradient, int threads, int bf16) {
    return guarded([&] {
        static_cast<Convolution*>(convolution)
            ->backward_weights(n, x, x_stride, g, g_stride, kernel_gradient, bias_gradient, threads, bf16 != 0);
    });
}

int matmul(float alpha, const std::uint16_t* a, int transpose_a, const std::uint16_t* b, int transpose_b, float* c,
           Index m, Index n, Index k, Index ldc, int accumulate, int threads) {
    return guarded([&] {
        bf16_matmul(alpha, a, transpose_a != 0, b, transpose_b != 0, c, m, n, k, ldc, accumulate != 0, threads);
    });
}

constexpr RbpOneDnnPlugin table{
    RBP_ONEDNN_PLUGIN_VERSION, last_error, conv_create, conv_destroy, conv_forward, conv_backward_data,
    conv_backward_weights,     matmul};

}  // namespace
}  // namespace rbp::onednn

extern "C" __attribute__((visibility("default"))) const RbpOneDnnPlugin* rbp_onednn_plugin(int version) {
    return version == RBP_ONEDNN_PLUGIN_VERSION ? &rbp::onednn::table : nullptr;
}
