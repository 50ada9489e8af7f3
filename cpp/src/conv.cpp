#include "rbp/conv.hpp"

#include "conv_onednn.hpp"
#include "rbp/gemm.hpp"
#include "rbp/parallel.hpp"

#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

namespace rbp {

namespace {
std::atomic<ConvImplementation> conv_implementation_setting{ConvImplementation::Auto};
}

bool onednn_available() { return onednn_built(); }

void set_conv_implementation(ConvImplementation implementation) {
    if (implementation == ConvImplementation::OneDnn && !onednn_built())
        throw std::invalid_argument("this build of rbp-native has no oneDNN");
    conv_implementation_setting = implementation;
}

ConvImplementation conv_implementation() { return conv_implementation_setting; }

WindowAxis window_axis(Index input, Index kernel, Index stride, Padding padding, const std::string& what) {
    require(kernel > 0, what + ": window size must be positive");
    require(stride > 0, what + ": stride must be positive");
    WindowAxis axis;
    if (padding == Padding::Valid) {
        require(input >= kernel, what + ": window " + std::to_string(kernel) + " is larger than the input (" +
                                     std::to_string(input) + ") with padding 'valid'");
        axis.output = (input - kernel) / stride + 1;
        axis.pad_before = 0;
    } else {
        axis.output = (input + stride - 1) / stride;
        const Index total = std::max<Index>((axis.output - 1) * stride + kernel - input, 0);
        axis.pad_before = total / 2;  // the extra row/column goes after (bottom/right), as in TensorFlow
    }
    return axis;
}

// A named namespace (not an anonymous one): the core may be compiled as one unity translation unit.
namespace conv_kernels {
// Per-thread scratch that only grows, so that a training loop allocates nothing after its first
// batch (layers of different sizes share it without reallocating).
template <class T, int Slot = 0>
Eigen::Map<Matrix<T>> patch_scratch(Index rows, Index cols) {
    thread_local std::vector<T> buffer;
    const auto needed = static_cast<std::size_t>(rows * cols);
    if (buffer.size() < needed) buffer.resize(needed);
    return Eigen::Map<Matrix<T>>(buffer.data(), rows, cols);
}

// Examples are independent, so a batch is split between threads by example (each runs its products
// on one thread: gemm's own split is nested there and runs serially), never finer than one example
// per thread. The split is fixed by the thread budget, not by how many threads the team gets.
int example_threads(Index examples) {
    return static_cast<int>(std::max<Index>(1, std::min<Index>(product_thread_budget(), examples)));
}

// body(first, count) for consecutive parts of [0, examples), part t of `parts`, on up to `parts` threads,
// each running its products as the calling thread does (bf16 or not: the scope is per thread).
template <class Body>
void for_example_parts(Index examples, int parts, const Body& body) {
    const bool bf16 = bf16_products();
#pragma omp parallel for num_threads(parts) schedule(static, 1) if (parts > 1)
    for (int t = 0; t < parts; ++t) {
        const Bf16Products products(bf16);
        const Index first = examples * t / parts;
        body(t, first, examples * (t + 1) / parts - first);
    }
}
}  // namespace conv_kernels

// Padding after the last row/column: what the last window needs beyond the input ("valid" windows
// that stop short of the end need none).
namespace conv_kernels {
Index after_padding(const WindowAxis& axis, Index input, Index kernel, Index stride) {
    return std::max<Index>((axis.output - 1) * stride + kernel - input - axis.pad_before, 0);
}
}  // namespace conv_kernels

template <class T>
ConvLayer<T>::ConvLayer(Shape3 input, Index filters, Index kernel_h, Index kernel_w, Index stride, Padding padding,
                        bool bias)
    : input_(input), kernel_h_(kernel_h), kernel_w_(kernel_w), stride_(stride), padding_(padding), has_bias_(bias) {
    require(input.channels > 0 && input.height > 0 && input.width > 0, "conv2d: input shape must be positive");
    require(filters > 0, "conv2d: filters must be positive");
    rows_ = window_axis(input.height, kernel_h, stride, padding, "conv2d");
    cols_ = window_axis(input.width, kernel_w, stride, padding, "conv2d");
    output_ = {filters, rows_.output, cols_.output};
    kernel_ = Matrix<T>::Zero(filters, input.channels * kernel_h * kernel_w);
    bias_ = Matrix<T>::Zero(1, bias ? filters : 0);
    if (std::is_same<T, float>::value && onednn_built()) {
        const ConvGeometry geometry{input.channels,
                                    input.height,
                                    input.width,
                                    filters,
                                    output_.height,
                                    output_.width,
                                    kernel_h,
                                    kernel_w,
                                    stride,
                                    rows_.pad_before,
                                    cols_.pad_before,
                                    conv_kernels::after_padding(rows_, input.height, kernel_h, stride),
                                    conv_kernels::after_padding(cols_, input.width, kernel_w, stride),
                                    bias};
        onednn_ = std::make_shared<OneDnnConvolution>(geometry);
    }
}

template <class T>
bool ConvLayer<T>::use_onednn() const {
    return onednn_ != nullptr && conv_implementation() != ConvImplementation::Eigen &&
           (!bf16_products() || bf16_onednn());
}

// The oneDNN calls, for float only (double layers never have primitives).
namespace conv_kernels {
inline void onednn_forward(OneDnnConvolution& conv, const ConstMatrixRef<float>& x, const Matrix<float>& kernel,
                           const Matrix<float>& bias, bool has_bias, MatrixRef<float> s) {
    conv.forward(x.rows(), x.data(), x.outerStride(), kernel.data(), has_bias ? bias.data() : nullptr, s.data(),
                 s.outerStride(), product_thread_budget(), bf16_products());
}
inline void onednn_forward(OneDnnConvolution&, const ConstMatrixRef<double>&, const Matrix<double>&,
                           const Matrix<double>&, bool, MatrixRef<double>) {}
inline void onednn_backward(OneDnnConvolution& conv, const ConstMatrixRef<float>& g, const Matrix<float>& kernel,
                            MatrixRef<float> j) {
    conv.backward_data(g.rows(), g.data(), g.outerStride(), kernel.data(), j.data(), j.outerStride(),
                       product_thread_budget(), bf16_products());
}
inline void onednn_backward(OneDnnConvolution&, const ConstMatrixRef<double>&, const Matrix<double>&,
                            MatrixRef<double>) {}
// With bf16 products oneDNN computes the kernel gradient only; the bias gradient is the sum of the float32
// signal over examples and positions, one partial sum per part of the batch added in part order.
inline void onednn_update(OneDnnConvolution& conv, const ConstMatrixRef<float>& x, const ConstMatrixRef<float>& b,
                          bool has_bias, Eigen::Map<Matrix<float>>& gradient,
                          Eigen::Map<Matrix<float>>& bias_gradient) {
    const bool bf16 = bf16_products();
    conv.backward_weights(x.rows(), x.data(), x.outerStride(), b.data(), b.outerStride(), gradient.data(),
                          has_bias && !bf16 ? bias_gradient.data() : nullptr, product_thread_budget(), bf16);
    if (!has_bias || !bf16) return;
    const Index filters = bias_gradient.cols(), positions = b.cols() / filters;
    const int parts = example_threads(b.rows());
    auto partials = patch_scratch<float, 3>(parts, filters);
    for_example_parts(b.rows(), parts, [&](int t, Index first, Index count) {
        auto sum = partials.row(t);
        sum.setZero();
        for (Index i = first; i < first + count; ++i)
            sum.noalias() +=
                Eigen::Map<const Matrix<float>>(b.row(i).data(), filters, positions).rowwise().sum().transpose();
    });
    bias_gradient.row(0) = partials.row(0);
    for (int t = 1; t < parts; ++t) bias_gradient.row(0) += partials.row(t);
}
inline void onednn_update(OneDnnConvolution&, const ConstMatrixRef<double>&, const ConstMatrixRef<double>&, bool,
                          Eigen::Map<Matrix<double>>&, Eigen::Map<Matrix<double>>&) {}
}  // namespace conv_kernels

template <class T>
void ConvLayer<T>::im2col(const T* image, T* col) const {
    const Index positions = output_.height * output_.width;
    for (Index c = 0; c < input_.channels; ++c) {
        const T* plane = image + c * input_.height * input_.width;
        for (Index dy = 0; dy < kernel_h_; ++dy) {
            for (Index dx = 0; dx < kernel_w_; ++dx) {
                T* row = col + ((c * kernel_h_ + dy) * kernel_w_ + dx) * positions;
                for (Index oy = 0; oy < output_.height; ++oy) {
                    const Index y = oy * stride_ - rows_.pad_before + dy;
                    T* out = row + oy * output_.width;
                    if (y < 0 || y >= input_.height) {
                        for (Index ox = 0; ox < output_.width; ++ox) out[ox] = T(0);
                        continue;
                    }
                    const T* line = plane + y * input_.width;
                    for (Index ox = 0; ox < output_.width; ++ox) {
                        const Index x = ox * stride_ - cols_.pad_before + dx;
                        out[ox] = (x >= 0 && x < input_.width) ? line[x] : T(0);
                    }
                }
            }
        }
    }
}

template <class T>
void ConvLayer<T>::col2im(const T* col, T* image) const {
    const Index positions = output_.height * output_.width;
    for (Index c = 0; c < input_.channels; ++c) {
        T* plane = image + c * input_.height * input_.width;
        for (Index dy = 0; dy < kernel_h_; ++dy) {
            for (Index dx = 0; dx < kernel_w_; ++dx) {
                const T* row = col + ((c * kernel_h_ + dy) * kernel_w_ + dx) * positions;
                for (Index oy = 0; oy < output_.height; ++oy) {
                    const Index y = oy * stride_ - rows_.pad_before + dy;
                    if (y < 0 || y >= input_.height) continue;
                    T* line = plane + y * input_.width;
                    const T* in = row + oy * output_.width;
                    for (Index ox = 0; ox < output_.width; ++ox) {
                        const Index x = ox * stride_ - cols_.pad_before + dx;
                        if (x >= 0 && x < input_.width) line[x] += in[ox];
                    }
                }
            }
        }
    }
}

template <class T>
void ConvLayer<T>::forward(const ConstMatrixRef<T>& x, MatrixRef<T> s) const {
    if (use_onednn()) return conv_kernels::onednn_forward(*onednn_, x, kernel_, bias_, has_bias_, s);
    const Index positions = output_.height * output_.width;
    const int parts = conv_kernels::example_threads(x.rows());
    conv_kernels::for_example_parts(x.rows(), parts, [&](int, Index first, Index count) {
        auto col = conv_kernels::patch_scratch<T>(kernel_.cols(), positions);
        for (Index i = first; i < first + count; ++i) {
            im2col(x.row(i).data(), col.data());
            Eigen::Map<Matrix<T>> out(s.row(i).data(), filters(), positions);
            gemm<T>(T(1), kernel_, false, col, false, out, false);
            if (has_bias_) out.colwise() += bias_.row(0).transpose();
        }
    });
}

template <class T>
void ConvLayer<T>::backward(const ConstMatrixRef<T>& g, MatrixRef<T> j) const {
    if (use_onednn()) return conv_kernels::onednn_backward(*onednn_, g, kernel_, j);
    const Index positions = output_.height * output_.width;
    const int parts = conv_kernels::example_threads(g.rows());
    conv_kernels::for_example_parts(g.rows(), parts, [&](int, Index first, Index count) {
        auto col = conv_kernels::patch_scratch<T>(kernel_.cols(), positions);
        for (Index i = first; i < first + count; ++i) {
            Eigen::Map<const Matrix<T>> signal(g.row(i).data(), filters(), positions);
            gemm<T>(T(1), kernel_, true, signal, false, col, false);
            j.row(i).setZero();
            col2im(col.data(), j.row(i).data());
        }
    });
}

template <class T>
void ConvLayer<T>::accumulate_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T scale,
                                     std::vector<Matrix<T>*>& targets) const {
    const Index positions = output_.height * output_.width;
    if (use_onednn()) {
        // oneDNN's weight gradient of the whole batch, then added to the target as the Eigen path adds.
        auto gradient = conv_kernels::patch_scratch<T, 1>(kernel_.rows(), kernel_.cols());
        auto bias_gradient = conv_kernels::patch_scratch<T, 2>(1, filters());
        conv_kernels::onednn_update(*onednn_, x, b, has_bias_, gradient, bias_gradient);
        *targets[0] += scale * gradient;
        if (has_bias_) targets[1]->row(0) += scale * bias_gradient.row(0);
        return;
    }
    const int parts = conv_kernels::example_threads(x.rows());
    if (parts == 1) {
        // Examples in order, each product accumulating into the target.
        auto col = conv_kernels::patch_scratch<T>(kernel_.cols(), positions);
        for (Index i = 0; i < x.rows(); ++i) {
            im2col(x.row(i).data(), col.data());
            Eigen::Map<const Matrix<T>> signal(b.row(i).data(), filters(), positions);
            gemm<T>(scale, signal, false, col, true, *targets[0], true);
            if (has_bias_) targets[1]->row(0).noalias() += scale * signal.rowwise().sum().transpose();
        }
        return;
    }
    // One partial sum per part of the batch (the calling thread's scratch, grown only), added to the
    // target in part order: the result depends on the thread budget only, not on the scheduling.
    const Index size = kernel_.size() + filters();
    thread_local std::vector<T> partials;
    const auto needed = static_cast<std::size_t>(parts * size);
    if (partials.size() < needed) partials.resize(needed);
    T* base = partials.data();
    conv_kernels::for_example_parts(x.rows(), parts, [&](int t, Index first, Index count) {
        Eigen::Map<Matrix<T>> kernel_sum(base + t * size, kernel_.rows(), kernel_.cols());
        Eigen::Map<RowVector<T>> bias_sum(base + t * size + kernel_.size(), filters());
        kernel_sum.setZero();
        bias_sum.setZero();
        auto col = conv_kernels::patch_scratch<T>(kernel_.cols(), positions);
        for (Index i = first; i < first + count; ++i) {
            im2col(x.row(i).data(), col.data());
            Eigen::Map<const Matrix<T>> signal(b.row(i).data(), filters(), positions);
            gemm<T>(T(1), signal, false, col, true, kernel_sum, true);
            bias_sum.noalias() += signal.rowwise().sum().transpose();
        }
    });
    for (int t = 0; t < parts; ++t) {
        *targets[0] += scale * Eigen::Map<const Matrix<T>>(base + t * size, kernel_.rows(), kernel_.cols());
        if (has_bias_)
            targets[1]->row(0) += scale * Eigen::Map<const RowVector<T>>(base + t * size + kernel_.size(), filters());
    }
}

template <class T>
void ConvLayer<T>::accumulate_quantized_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T lr,
                                               const Quantizer& q, Rng& rng, std::vector<Matrix<T>*>& targets) const {
    // An example's update of the shared kernel is its whole weight gradient B_i col(X_i)^T (all
    // positions summed): that is what is quantised, entry by entry in row-major order, then the bias
    // Q(lr * sum over positions of B_i); examples in order (stochastic rounding draws in that order).
    const Index positions = output_.height * output_.width;
    const T inv_n = T(1) / static_cast<T>(b.rows());
    const QuantizerGrid<T> grid(q);
    auto col = conv_kernels::patch_scratch<T>(kernel_.cols(), positions);
    auto gradient = conv_kernels::patch_scratch<T, 1>(kernel_.rows(), kernel_.cols());
    for (Index i = 0; i < x.rows(); ++i) {
        im2col(x.row(i).data(), col.data());
        Eigen::Map<const Matrix<T>> signal(b.row(i).data(), filters(), positions);
        gemm<T>(T(1), signal, false, col, true, gradient, false);
        T* w = targets[0]->data();
        for (Index k = 0; k < gradient.size(); ++k) w[k] += inv_n * grid(lr * gradient.data()[k], rng);
        if (has_bias_) grid.add_to_bias(signal.rowwise().sum().transpose(), lr, inv_n, rng, targets[1]->row(0));
    }
}

template <class T>
void ConvLayer<T>::set_kernel(const ConstMatrixRef<T>& k) {
    require(k.rows() == kernel_.rows() && k.cols() == kernel_.cols(),
            "kernel must have " + std::to_string(kernel_.rows()) + " x " + std::to_string(kernel_.cols()) + " entries");
    kernel_ = k;
}

template <class T>
std::vector<Matrix<T>*> ConvLayer<T>::parameters() {
    if (has_bias_) return {&kernel_, &bias_};
    return {&kernel_};
}

template <class T>
std::vector<const Matrix<T>*> ConvLayer<T>::parameters() const {
    if (has_bias_) return {&kernel_, &bias_};
    return {&kernel_};
}

template <class T>
void ConvLayer<T>::initialise(Init init, Rng& rng) {
    const double fan_in = static_cast<double>(input_.channels * kernel_h_ * kernel_w_);
    const double fan_out = static_cast<double>(filters() * kernel_h_ * kernel_w_);
    switch (init) {
        case Init::GlorotNormal: fill_normal(kernel_, std::sqrt(2.0 / (fan_in + fan_out)), rng); break;
        case Init::HeNormal: fill_normal(kernel_, std::sqrt(2.0 / fan_in), rng); break;
        case Init::LecunNormal: fill_normal(kernel_, std::sqrt(1.0 / fan_in), rng); break;
        case Init::GlorotUniform: {
            const double limit = std::sqrt(6.0 / (fan_in + fan_out));
            for (Index i = 0; i < kernel_.size(); ++i)
                kernel_.data()[i] = static_cast<T>(limit * (2.0 * rng.uniform() - 1.0));
            break;
        }
    }
    bias_.setZero();
}

// ---------------------------------------------------------------------------------------------
// MaxPool

MaxPool::MaxPool(Shape3 input, Index size_h, Index size_w, Index stride, Padding padding)
    : input_(input), size_h_(size_h), size_w_(size_w), stride_(stride), padding_(padding) {
    require(input.channels > 0 && input.height > 0 && input.width > 0, "max_pool2d: input shape must be positive");
    rows_ = window_axis(input.height, size_h, stride, padding, "max_pool2d");
    cols_ = window_axis(input.width, size_w, stride, padding, "max_pool2d");
    output_ = {input.channels, rows_.output, cols_.output};
}

template <class T>
void MaxPool::forward(const ConstMatrixRef<T>& x, MatrixRef<T> y, ArgmaxMatrix* argmax) const {
    const Index plane = input_.height * input_.width;
    const Index out_plane = output_.height * output_.width;
    // Examples are independent: split between threads by example, as the convolutions are.
    const int parts = conv_kernels::example_threads(x.rows());
    conv_kernels::for_example_parts(x.rows(), parts, [&](int, Index first, Index count) {
        for (Index i = first; i < first + count; ++i) {
            const T* image = x.row(i).data();
            T* out = y.row(i).data();
            std::int32_t* winners = argmax ? argmax->row(i).data() : nullptr;
            for (Index c = 0; c < input_.channels; ++c) {
                for (Index oy = 0; oy < output_.height; ++oy) {
                    const Index y0 = std::max<Index>(oy * stride_ - rows_.pad_before, 0);
                    const Index y1 = std::min<Index>(oy * stride_ - rows_.pad_before + size_h_, input_.height);
                    for (Index ox = 0; ox < output_.width; ++ox) {
                        const Index x0 = std::max<Index>(ox * stride_ - cols_.pad_before, 0);
                        const Index x1 = std::min<Index>(ox * stride_ - cols_.pad_before + size_w_, input_.width);
                        // Strictly greater: the first maximum in row-major window order keeps the win.
                        Index best = c * plane + y0 * input_.width + x0;
                        T value = image[best];
                        for (Index yy = y0; yy < y1; ++yy) {
                            for (Index xx = x0; xx < x1; ++xx) {
                                const Index at = c * plane + yy * input_.width + xx;
                                if (image[at] > value) {
                                    value = image[at];
                                    best = at;
                                }
                            }
                        }
                        const Index o = c * out_plane + oy * output_.width + ox;
                        out[o] = value;
                        if (winners) winners[o] = static_cast<std::int32_t>(best);
                    }
                }
            }
        }
    });
}

template <class T>
void MaxPool::route(const ConstMatrixRef<T>& g, const ArgmaxMatrix& argmax, MatrixRef<T> j) const {
    const Index outputs = output_.size();
    const int parts = conv_kernels::example_threads(g.rows());
    conv_kernels::for_example_parts(g.rows(), parts, [&](int, Index first, Index count) {
        for (Index i = first; i < first + count; ++i) {
            auto row = j.row(i);
            row.setZero();
            const T* signal = g.row(i).data();
            const std::int32_t* winners = argmax.row(i).data();
            for (Index o = 0; o < outputs; ++o) row(winners[o]) += signal[o];
        }
    });
}

template class ConvLayer<float>;
template class ConvLayer<double>;
template void MaxPool::forward<float>(const ConstMatrixRef<float>&, MatrixRef<float>, ArgmaxMatrix*) const;
template void MaxPool::forward<double>(const ConstMatrixRef<double>&, MatrixRef<double>, ArgmaxMatrix*) const;
template void MaxPool::route<float>(const ConstMatrixRef<float>&, const ArgmaxMatrix&, MatrixRef<float>) const;
template void MaxPool::route<double>(const ConstMatrixRef<double>&, const ArgmaxMatrix&, MatrixRef<double>) const;

}  // namespace rbp
