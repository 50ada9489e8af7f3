// Single-precision convolutions through oneDNN, in the plugin (cpp/src/conv_onednn.hpp says why oneDNN
// and how the primitives are cached).
#include "onednn_common.hpp"

#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace rbp::onednn {

using dnnl::memory;
using Tag = memory::format_tag;
using Type = memory::data_type;

// The arguments of a primitive's calls: one map per primitive, its entries reassigned at each call (a
// memory object is a handle; the map allocates only when it is first filled).
using Arguments = std::unordered_map<int, memory>;

// A tensor in the user's layout (NCHW float32, rows possibly strided) and the layout a primitive wants;
// the reorders exist only when the two differ. A bf16 input's reorder also rounds (nearest even). The user's layout is
// fixed per row stride: a call with another stride (a block of a wider matrix) rebuilds it.
struct Operand {
    memory::desc wanted;
    bool input, output;
    Index row_stride = -1;
    memory user, inner;
    dnnl::reorder in, out;
    Arguments reorder_args;  // from the user's layout to the primitive's (outputs: the other way)
    bool reordered = false;

    Operand(const memory::desc& wanted_desc, bool is_input, bool is_output)
        : wanted(wanted_desc), input(is_input), output(is_output) {}

    void layout(Index stride) {
        if (stride == row_stride) return;
        const memory::dims dims = wanted.get_dims();
        memory::dims strides(dims.size(), 1);
        for (std::size_t d = dims.size() - 1; d > 0; --d) strides[d - 1] = strides[d] * dims[d];
        strides[0] = stride;  // rows (examples, or filters for a kernel) may be strided
        const memory::desc user_desc(dims, Type::f32, strides);
        auto& engine = cpu_engine();
        user = memory(user_desc, engine, DNNL_MEMORY_NONE);
        reordered = wanted != user_desc;
        inner = reordered ? memory(wanted, engine) : user;
        if (reordered && input) {
            in = dnnl::reorder(user, inner);
            reorder_args = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, inner}};
        }
        if (reordered && output) {
            out = dnnl::reorder(inner, user);
            reorder_args = {{DNNL_ARG_FROM, inner}, {DNNL_ARG_TO, user}};
        }
        row_stride = stride;
    }
    // The user's buffer for this call; copied into the primitive's layout when it is an input.
    memory& bind_input(const float* data, Index stride, dnnl::stream& stream) {
        layout(stride);
        user.set_data_handle(const_cast<float*>(data));
        if (reordered) in.execute(stream, reorder_args);
        return inner;
    }
    memory& bind_output(float* data, Index stride) {
        layout(stride);
        user.set_data_handle(data);
        return inner;
    }
    void finish_output(dnnl::stream& stream) {
        if (reordered) out.execute(stream, reorder_args);
    }
};

struct Primitives {
    Index batch;
    int threads;
    bool bf16;
    Arguments forward_args, data_args, weights_args;
    memory bias, diff_bias;  // the user's bias and bias gradient (plain), handles set per call
    dnnl::convolution_forward::primitive_desc forward_pd;
    dnnl::convolution_forward forward;
    std::unique_ptr<Operand> forward_src, forward_weights, forward_dst;
    bool has_data = false, has_weights = false;
    dnnl::convolution_backward_data data;
    std::unique_ptr<Operand> data_diff_dst, data_weights, data_diff_src;
    dnnl::convolution_backward_weights weights;
    std::unique_ptr<Operand> weights_src, weights_diff_dst, weights_diff_weights;
};

struct Convolution::Impl {
    using memory = dnnl::memory;
    RbpConvGeometry g;
    dnnl::stream stream{cpu_engine()};
    std::mutex mutex;
    // A few (batch, threads) pairs: a training batch, the last partial batch, evaluation chunks.
    std::vector<std::unique_ptr<Primitives>> cache;

    memory::dims src_dims(Index n) const { return {n, g.channels, g.height, g.width}; }
    memory::dims dst_dims(Index n) const { return {n, g.filters, g.out_height, g.out_width}; }
    memory::dims weight_dims() const { return {g.filters, g.channels, g.kernel_h, g.kernel_w}; }
    memory::dims strides() const { return {g.stride, g.stride}; }
    memory::dims pad_before() const { return {g.pad_top, g.pad_left}; }
    memory::dims pad_after() const { return {g.pad_bottom, g.pad_right}; }
    Index kernel_stride() const { return g.channels * g.kernel_h * g.kernel_w; }
    memory::desc bias_desc() const { return g.bias ? memory::desc({g.filters}, Type::f32, Tag::x) : memory::desc(); }
    // Any layout: the primitive picks its blocked one. Inputs are bf16 in a bf16 call, outputs float32.
    static memory::desc any(const memory::dims& dims, bool bf16 = false) {
        return memory::desc(dims, bf16 ? Type::bf16 : Type::f32, Tag::any);
    }
    // The user's bias (or its gradient) as argument `arg`, when the convolution has one; `handle` is made
    // on first use and kept with the primitive.
    void bind_bias(memory& handle, const float* data, Arguments& args, int arg) const {
        if (!g.bias) return;
        if (!handle) handle = memory(bias_desc(), cpu_engine(), DNNL_MEMORY_NONE);
        handle.set_data_handle(const_cast<float*>(data));
        args[arg] = handle;
    }

    Primitives& primitives(Index n, int threads, bool bf16) {
        for (std::size_t i = 0; i < cache.size(); ++i) {
            if (cache[i]->batch == n && cache[i]->threads == threads && cache[i]->bf16 == bf16) {
                if (i > 0) std::swap(cache[i], cache[0]);  // most recent first
                return *cache[0];
            }
        }
        auto p = std::make_unique<Primitives>();
        p->batch = n;
        p->threads = threads;
        p->bf16 = bf16;
        p->forward_pd = dnnl::convolution_forward::primitive_desc(
            cpu_engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
            any(src_dims(n), bf16), any(weight_dims(), bf16), bias_desc(), any(dst_dims(n)), strides(), pad_before(),
            pad_after());
        p->forward = dnnl::convolution_forward(p->forward_pd);
        p->forward_src = std::make_unique<Operand>(p->forward_pd.src_desc(), true, false);
        p->forward_weights = std::make_unique<Operand>(p->forward_pd.weights_desc(), true, false);
        p->forward_dst = std::make_unique<Operand>(p->forward_pd.dst_desc(), false, true);
        if (cache.size() >= 4) cache.pop_back();
        cache.insert(cache.begin(), std::move(p));
        return *cache[0];
    }

    void add_backward_data(Primitives& p) {
        auto pd = dnnl::convolution_backward_data::primitive_desc(
            cpu_engine(), dnnl::algorithm::convolution_direct, any(src_dims(p.batch)), any(weight_dims(), p.bf16),
            any(dst_dims(p.batch), p.bf16), strides(), pad_before(), pad_after(), p.forward_pd);
        p.data = dnnl::convolution_backward_data(pd);
        p.data_diff_dst = std::make_unique<Operand>(pd.diff_dst_desc(), true, false);
        p.data_weights = std::make_unique<Operand>(pd.weights_desc(), true, false);
        p.data_diff_src = std::make_unique<Operand>(pd.diff_src_desc(), false, true);
        p.has_data = true;
    }

    // In a bf16 call the bias gradient is left to the core (plugin_api.h), hence no bias here.
    void add_backward_weights(Primitives& p) {
        auto pd = dnnl::convolution_backward_weights::primitive_desc(
            cpu_engine(), dnnl::algorithm::convolution_direct, any(src_dims(p.batch), p.bf16), any(weight_dims()),
            p.bf16 ? memory::desc() : bias_desc(), any(dst_dims(p.batch), p.bf16), strides(), pad_before(), pad_after(),
            p.forward_pd);
        p.weights = dnnl::convolution_backward_weights(pd);
        p.weights_src = std::make_unique<Operand>(pd.src_desc(), true, false);
        p.weights_diff_dst = std::make_unique<Operand>(pd.diff_dst_desc(), true, false);
        p.weights_diff_weights = std::make_unique<Operand>(pd.diff_weights_desc(), false, true);
        p.has_weights = true;
    }
};

Convolution::Convolution(const RbpConvGeometry& geometry) : impl_(std::make_unique<Impl>()) { impl_->g = geometry; }

Convolution::~Convolution() = default;

void Convolution::forward(Index n, const float* x, Index x_stride, const float* kernel, const float* bias, float* s,
                          Index s_stride, int threads, bool bf16) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    OmpThreads scope(threads);
    auto& p = impl_->primitives(n, threads, bf16);
    auto& stream = impl_->stream;
    auto& args = p.forward_args;
    args[DNNL_ARG_SRC] = p.forward_src->bind_input(x, x_stride, stream);
    args[DNNL_ARG_WEIGHTS] = p.forward_weights->bind_input(kernel, impl_->kernel_stride(), stream);
    args[DNNL_ARG_DST] = p.forward_dst->bind_output(s, s_stride);
    impl_->bind_bias(p.bias, bias, args, DNNL_ARG_BIAS);
    p.forward.execute(stream, args);
    p.forward_dst->finish_output(stream);
    stream.wait();
}

void Convolution::backward_data(Index n, const float* g, Index g_stride, const float* kernel, float* j, Index j_stride,
                                int threads, bool bf16) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    OmpThreads scope(threads);
    auto& p = impl_->primitives(n, threads, bf16);
    if (!p.has_data) impl_->add_backward_data(p);
    auto& stream = impl_->stream;
    auto& args = p.data_args;
    args[DNNL_ARG_DIFF_DST] = p.data_diff_dst->bind_input(g, g_stride, stream);
    args[DNNL_ARG_WEIGHTS] = p.data_weights->bind_input(kernel, impl_->kernel_stride(), stream);
    args[DNNL_ARG_DIFF_SRC] = p.data_diff_src->bind_output(j, j_stride);
    p.data.execute(stream, args);
    p.data_diff_src->finish_output(stream);
    stream.wait();
}

void Convolution::backward_weights(Index n, const float* x, Index x_stride, const float* g, Index g_stride,
                                   float* kernel_gradient, float* bias_gradient, int threads, bool bf16) {
    if (bf16 && bias_gradient != nullptr) throw std::invalid_argument("a bf16 call computes no bias gradient");
    std::lock_guard<std::mutex> lock(impl_->mutex);
    OmpThreads scope(threads);
    auto& p = impl_->primitives(n, threads, bf16);
    if (!p.has_weights) impl_->add_backward_weights(p);
    auto& stream = impl_->stream;
    auto& args = p.weights_args;
    args[DNNL_ARG_SRC] = p.weights_src->bind_input(x, x_stride, stream);
    args[DNNL_ARG_DIFF_DST] = p.weights_diff_dst->bind_input(g, g_stride, stream);
    args[DNNL_ARG_DIFF_WEIGHTS] = p.weights_diff_weights->bind_output(kernel_gradient, impl_->kernel_stride());
    if (!bf16) impl_->bind_bias(p.diff_bias, bias_gradient, args, DNNL_ARG_DIFF_BIAS);
    p.weights.execute(stream, args);
    p.weights_diff_weights->finish_output(stream);
    stream.wait();
}

}  // namespace rbp::onednn
