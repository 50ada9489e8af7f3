// Convolution and max-pooling on NCHW batches stored row-major as (batch, C*H*W): row i of a batch is
// image i flattened in C, H, W order (numpy's C order of an (N, C, H, W) array), so flattening is
// the identity and a dense layer after a convolution reads the same buffer.
//
// Window geometry (shared by convolution and pooling): "valid" has no padding, output
// floor((H - k) / stride) + 1; "same" pads as TensorFlow/Keras do for the given stride: output
// ceil(H / stride), total padding max((out - 1) * stride + k - H, 0) split with the extra row/column
// on the bottom/right. docs/conv.md gives the conventions the channels use through these layers.
#pragma once

#include "rbp/layer.hpp"
#include "rbp/options.hpp"  // Padding and its names

#include <cstdint>
#include <memory>

namespace rbp {

class OneDnnConvolution;  // cpp/src/conv_onednn.hpp

// Which code runs the single-precision convolutions: oneDNN where the build has it (Auto, the
// default), or the portable im2col + GEMM path (Eigen) that double precision always uses. OneDnn
// without oneDNN in the build throws. Process-wide, for the tests and benchmarks that compare them;
// not meant to change while a network trains.
enum class ConvImplementation { Auto, Eigen, OneDnn };
void set_conv_implementation(ConvImplementation implementation);
ConvImplementation conv_implementation();
// Whether this build has oneDNN.
bool onednn_available();

// A per-example tensor shape (channels, height, width); a flat vector of n values is (n, 1, 1).
struct Shape3 {
    Index channels = 0, height = 0, width = 0;
    Index size() const { return channels * height * width; }
};

// One spatial axis of a sliding window: output length and padding before the first element.
struct WindowAxis {
    Index output = 0;
    Index pad_before = 0;
};
// Throws invalid_argument naming `what` when the window does not fit.
WindowAxis window_axis(Index input, Index kernel, Index stride, Padding padding, const std::string& what);

// 2-D convolution (a cross-correlation, as PyTorch's conv2d): S[o, y, x] = b[o] +
// sum_{c, dy, dx} K[o, c, dy, dx] X[c, y * stride - pad_top + dy, x * stride - pad_left + dx], with
// zeros outside X. The kernel is stored as a (filters, channels * kh * kw) row-major matrix, i.e. the
// (out_channels, in_channels, kh, kw) array of PyTorch flattened.
// Inside a Bf16Products scope (single precision) the three products of the layer (forward, backward
// data, kernel gradient) round both operands to bfloat16 and sum in float32, like gemm(); the bias and
// the bias gradient stay float32.
template <class T>
class ConvLayer final : public Layer<T> {
public:
    ConvLayer(Shape3 input, Index filters, Index kernel_h, Index kernel_w, Index stride, Padding padding, bool bias);

    std::string kind() const override { return "conv2d"; }
    Index input_size() const override { return input_.size(); }
    Index output_size() const override { return output_.size(); }
    Shape3 input_shape() const { return input_; }
    Shape3 output_shape() const { return output_; }
    Index filters() const { return kernel_.rows(); }
    Index kernel_h() const { return kernel_h_; }
    Index kernel_w() const { return kernel_w_; }
    Index stride() const { return stride_; }
    Padding padding() const { return padding_; }
    bool has_bias() const { return has_bias_; }

    void forward(const ConstMatrixRef<T>& x, MatrixRef<T> s) const override;
    // The transposed convolution (backward-data): per example col = K^T G, scattered back (col2im).
    void backward(const ConstMatrixRef<T>& g, MatrixRef<T> j) const override;
    // K += scale sum_i B_i col(X_i)^T, bias += scale * sums of B over examples and positions.
    void accumulate_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T scale,
                           std::vector<Matrix<T>*>& targets) const override;
    // Low-bit updates: an example's update of the kernel is its whole weight gradient (all
    // positions summed), quantised entry by entry before the batch average (docs/conv.md).
    void accumulate_quantized_update(const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x, T lr, const Quantizer& q,
                                     Rng& rng, std::vector<Matrix<T>*>& targets) const override;
    std::vector<Matrix<T>*> parameters() override;
    std::vector<const Matrix<T>*> parameters() const override;
    // Glorot/He/LeCun with Keras's fans: fan_in = channels * kh * kw, fan_out = filters * kh * kw.
    void initialise(Init init, Rng& rng) override;
    // Every kernel entry at every output position (padding included).
    Index forward_macs() const override { return kernel_.size() * output_.height * output_.width; }

    Matrix<T>& kernel() { return kernel_; }
    const Matrix<T>& kernel() const { return kernel_; }
    void set_kernel(const ConstMatrixRef<T>& k);

private:
    // Whether this call runs on oneDNN (single precision, oneDNN built and not switched off; for bf16
    // products, gemm.hpp's Bf16Products, oneDNN's bf16 products not switched off either).
    bool use_onednn() const;
    // Patches of one example: col (channels * kh * kw, out_h * out_w), zeros where the window
    // overlaps the padding.
    void im2col(const T* image, T* col) const;
    // image += the patches in col scattered back to their positions (the adjoint of im2col).
    void col2im(const T* col, T* image) const;

    Shape3 input_, output_;
    Index kernel_h_, kernel_w_, stride_;
    Padding padding_;
    WindowAxis rows_, cols_;
    Matrix<T> kernel_;
    Matrix<T> bias_;  // 1 x filters; 1 x 0 without bias
    bool has_bias_;
    // The layer's oneDNN primitives (float builds with oneDNN only; shared by copies of the layer,
    // which have the same geometry).
    std::shared_ptr<OneDnnConvolution> onednn_;
};

// Index type of the pooling argmax (flat position inside one example's pool input).
using ArgmaxMatrix = Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Max-pooling per channel over (possibly overlapping) windows. Padding positions never win (they
// are not candidates). Ties: the first maximum in row-major window order wins. It has no
// parameters; its backward pass routes each output's signal to the input position that won
// (summing where overlapping windows share a winner), so it needs the argmax of the forward pass.
class MaxPool {
public:
    MaxPool(Shape3 input, Index size_h, Index size_w, Index stride, Padding padding);

    Shape3 input_shape() const { return input_; }
    Shape3 output_shape() const { return output_; }
    Index size_h() const { return size_h_; }
    Index size_w() const { return size_w_; }
    Index stride() const { return stride_; }
    Padding padding() const { return padding_; }

    // y = maxpool(x); when `argmax` is non-null it receives, per output, the flat index of the winner
    // inside the example's input (rows x.rows(), columns output size).
    template <class T>
    void forward(const ConstMatrixRef<T>& x, MatrixRef<T> y, ArgmaxMatrix* argmax) const;
    // j = the signal g at the output routed back to the winners of `argmax` (j is overwritten).
    template <class T>
    void route(const ConstMatrixRef<T>& g, const ArgmaxMatrix& argmax, MatrixRef<T> j) const;

private:
    Shape3 input_, output_;
    Index size_h_, size_w_, stride_;
    Padding padding_;
    WindowAxis rows_, cols_;
};

}  // namespace rbp
