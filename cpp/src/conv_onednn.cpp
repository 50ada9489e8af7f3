#include "conv_onednn.hpp"

#include <mutex>

namespace rbp {

// The plugin's convolution, created on the first call (the plugin opened then).
struct OneDnnConvolution::Impl {
    ConvGeometry geometry;
    std::mutex mutex;
    void* convolution = nullptr;

    void* get() {
        const std::lock_guard<std::mutex> lock(mutex);
        if (convolution == nullptr) check_onednn(onednn_plugin().conv_create(&geometry, &convolution));
        return convolution;
    }
};

OneDnnConvolution::OneDnnConvolution(const ConvGeometry& geometry) : impl_(std::make_unique<Impl>()) {
    impl_->geometry = geometry;
}

OneDnnConvolution::~OneDnnConvolution() {
    if (impl_->convolution != nullptr) onednn_plugin().conv_destroy(impl_->convolution);
}

void OneDnnConvolution::forward(Index n, const float* x, Index x_stride, const float* kernel, const float* bias,
                                float* s, Index s_stride, int threads, bool bf16) {
    void* convolution = impl_->get();
    check_onednn(onednn_plugin().conv_forward(convolution, n, x, x_stride, kernel, bias, s, s_stride, threads, bf16));
}

void OneDnnConvolution::backward_data(Index n, const float* g, Index g_stride, const float* kernel, float* j,
                                      Index j_stride, int threads, bool bf16) {
    void* convolution = impl_->get();
    check_onednn(onednn_plugin().conv_backward_data(convolution, n, g, g_stride, kernel, j, j_stride, threads, bf16));
}

void OneDnnConvolution::backward_weights(Index n, const float* x, Index x_stride, const float* g, Index g_stride,
                                         float* kernel_gradient, float* bias_gradient, int threads, bool bf16) {
    void* convolution = impl_->get();
    check_onednn(onednn_plugin().conv_backward_weights(convolution, n, x, x_stride, g, g_stride, kernel_gradient,
                                                       bias_gradient, threads, bf16));
}

}  // namespace rbp
