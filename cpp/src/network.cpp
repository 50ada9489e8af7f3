#include "rbp/network.hpp"

#include "rbp/sparse_layer.hpp"

#include <algorithm>

namespace rbp {

template <class T>
void Network<T>::reserve(ForwardWorkspace<T>& ws, Index batch) const {
    if (batch <= ws.capacity) return;
    const std::vector<Index>& sizes = spec_.sizes;
    const std::size_t layers = sizes.size() - 1;
    ws.out.resize(layers);
    ws.activity.resize(layers);
    ws.pooled.resize(layers);
    for (std::size_t h = 0; h < layers; ++h) {
        ws.out[h].resize(batch, sizes[h + 1]);
        const auto& pools = pools_[h];
        if (pools.empty()) continue;
        ws.activity[h].resize(batch, layers_[h]->output_size());  // f(S^h)
        ws.pooled[h].resize(pools.size() - 1);
        for (std::size_t k = 0; k + 1 < pools.size(); ++k)
            ws.pooled[h][k].resize(batch, pools[k].output_shape().size());
    }
    ws.top_pre.resize(batch, sizes.back());
    ws.capacity = batch;
}

template <class T>
void Network<T>::reserve(TrainingWorkspace<T>& ws, Index batch) const {
    if (batch <= ws.capacity) return;
    const std::vector<Index>& sizes = spec_.sizes;
    const std::size_t layers = sizes.size() - 1;
    ws.signal.resize(layers);
    ws.derivative.resize(layers - 1);
    ws.argmax.resize(layers);
    ws.arrived.resize(layers);
    ws.routed.resize(layers);
    Index hidden_total = 0;
    for (std::size_t h = 0; h < layers; ++h) {
        const Index pre = layers_[h]->output_size();  // S^h
        ws.signal[h].resize(batch, pre);
        if (h + 1 < layers) {
            ws.derivative[h].resize(batch, pre);
            hidden_total += pre;
        }
        const auto& pools = pools_[h];
        if (pools.empty()) continue;
        ws.argmax[h].resize(pools.size());
        ws.routed[h].resize(pools.size() - 1);
        for (std::size_t k = 0; k < pools.size(); ++k) {
            ws.argmax[h][k].resize(batch, pools[k].output_shape().size());
            if (k + 1 < pools.size()) ws.routed[h][k].resize(batch, pools[k].output_shape().size());
        }
        ws.arrived[h].resize(batch, sizes[h + 1]);
    }
    ws.received.resize(batch, hidden_total);
    ws.capacity = batch;
}

template <class T>
Network<T>::Network(const NetworkSpec& spec) : spec_(spec) {
    if (spec_.stages.empty()) {
        require(spec.sizes.size() >= 2, "a network needs at least an input and an output size");
        for (Index n : spec.sizes) require(n > 0, "layer sizes must be positive");
        spec_.input_shape = {spec.sizes.front(), 1, 1};
        for (std::size_t h = 1; h < spec.sizes.size(); ++h) {
            StageSpec stage;
            stage.units = spec.sizes[h];
            spec_.stages.push_back(stage);
        }
    }
    const std::size_t layers = spec_.stages.size();
    require(layers >= 1, "a network needs at least one layer with weights");
    if (spec_.densities.empty()) spec_.densities.assign(layers, 1.0);
    require(spec_.densities.size() == layers, "densities needs one value per weight layer (" + std::to_string(layers) +
                                                  "), got " + std::to_string(spec_.densities.size()));
    for (double p : spec_.densities)
        require(p > 0.0 && p <= 1.0, "connection densities must lie in (0, 1], got " + std::to_string(p));
    const std::uint64_t connectivity = derive_seed(spec.seed, "connectivity");
    Shape3 shape = spec_.input_shape;
    require(shape.channels > 0 && shape.height > 0 && shape.width > 0, "the input shape must be positive");
    // A flat input or a dense stage's output has no spatial layout a convolution could use.
    bool spatial = shape.height > 1 || shape.width > 1 || !spec.stages.empty();
    spec_.sizes.assign(1, shape.size());
    for (std::size_t h = 1; h <= layers; ++h) {
        const StageSpec& stage = spec_.stages[h - 1];
        const double density = spec_.densities[h - 1];
        const std::string name = "layer " + std::to_string(h);
        if (stage.conv) {
            require(spatial,
                    name + ": a convolution needs a (channels, height, width) input, not a dense layer's output");
            require(density == 1.0, name + ": sparse connectivity applies to dense layers only");
            auto conv = std::make_unique<ConvLayer<T>>(shape, stage.filters, stage.kernel_h, stage.kernel_w,
                                                       stage.stride, stage.padding, spec.bias);
            shape = conv->output_shape();
            layers_.push_back(std::move(conv));
        } else {
            require(stage.units > 0, name + ": layer sizes must be positive");
            if (density < 1.0) {
                // Each layer's mask has its own stream, so it depends only on the seed, h, its shape
                // and its density.
                Rng mask_rng(derive_seed(connectivity, "W" + std::to_string(h)));
                layers_.push_back(
                    std::make_unique<SparseLayer<T>>(shape.size(), stage.units, spec.bias, density, mask_rng));
            } else {
                layers_.push_back(std::make_unique<DenseLayer<T>>(shape.size(), stage.units, spec.bias));
            }
            shape = {stage.units, 1, 1};
            spatial = false;
        }
        pools_.emplace_back();
        for (const PoolSpec& pool : stage.pools) {
            require(stage.conv, name + ": max-pooling needs a convolution's output, not a dense layer's");
            require(h < layers, "the output layer cannot be pooled");
            pools_.back().emplace_back(shape, pool.size_h, pool.size_w, pool.stride, pool.padding);
            shape = pools_.back().back().output_shape();
        }
        spec_.sizes.push_back(shape.size());
    }
    initialise(spec.seed);
}

template <class T>
Index Network<T>::inference_chunk(Index requested) const {
    if (!has_conv()) return requested;
    // Convolutional activities are large (the paper's CIFAR-10 net: ~110k values per example), so
    // a chunk holds at most about 2^24 of them (64 MiB in float32).
    constexpr Index kMaxChunkValues = Index(1) << 24;
    Index per_example = spec_.sizes.back();
    for (Index h = 0; h < num_layers(); ++h) {
        per_example += spec_.sizes[static_cast<std::size_t>(h + 1)];
        if (pooled(h)) {  // f(S^h) and the outputs of all but the last pool
            per_example += layers_[static_cast<std::size_t>(h)]->output_size();
            for (std::size_t k = 0; k + 1 < pools(h).size(); ++k) per_example += pools(h)[k].output_shape().size();
        }
    }
    return std::max<Index>(1, std::min(requested, kMaxChunkValues / per_example));
}

template <class T>
bool Network<T>::has_pools() const {
    return std::any_of(pools_.begin(), pools_.end(), [](const auto& p) { return !p.empty(); });
}

template <class T>
bool Network<T>::has_conv() const {
    return std::any_of(spec_.stages.begin(), spec_.stages.end(), [](const StageSpec& s) { return s.conv; });
}

template <class T>
void Network<T>::route(Index h, TrainingWorkspace<T>& ws, const ConstMatrixRef<T>& g, MatrixRef<T> j) const {
    const auto hs = static_cast<std::size_t>(h);
    const auto& pools = pools_[hs];
    const Index n = g.rows();
    for (std::size_t k = pools.size(); k-- > 0;) {
        const ConstMatrixRef<T> source = k + 1 == pools.size() ? g : ConstMatrixRef<T>(ws.routed[hs][k].topRows(n));
        MatrixRef<T> target = k == 0 ? j : MatrixRef<T>(ws.routed[hs][k - 1].topRows(n));
        pools[k].route<T>(source, ws.argmax[hs][k], target);
    }
}

template <class T>
void Network<T>::initialise(std::uint64_t seed) {
    Rng rng(derive_seed(seed, "init"));
    for (auto& layer : layers_) layer->initialise(spec_.init, rng);
}

template <class T>
void Network<T>::forward(const ConstMatrixRef<T>& x, ForwardWorkspace<T>& ws) const {
    forward_pass(x, ws, nullptr, false);
}

template <class T>
void Network<T>::forward(const ConstMatrixRef<T>& x, ForwardWorkspace<T>& ws, TrainingWorkspace<T>& training,
                         bool derivatives) const {
    forward_pass(x, ws, &training, derivatives);
}

template <class T>
void Network<T>::forward_pass(const ConstMatrixRef<T>& x, ForwardWorkspace<T>& ws, TrainingWorkspace<T>* training,
                              bool derivatives) const {
    const Index n = x.rows();
    const Index layers = num_layers();
    for (Index h = 0; h < layers; ++h) {
        const auto hs = static_cast<std::size_t>(h);
        const bool top = h + 1 == layers;
        // A hidden layer's product lands in O^h and f is applied in place: S^h is needed by nothing
        // after f(S^h) and f'(S^h) (both from one sweep), so it costs no buffer and no copy.
        const auto& pools = pools_[hs];
        MatrixRef<T> s = top             ? MatrixRef<T>(ws.top_pre.topRows(n))
                         : pools.empty() ? MatrixRef<T>(ws.out[hs].topRows(n))
                                         : MatrixRef<T>(ws.activity[hs].topRows(n));
        if (h == 0 && ws.sparse_input != nullptr)
            static_cast<const DenseLayer<T>&>(*layers_[hs]).forward_sparse(*ws.sparse_input, *ws.sparse_weight, s);
        else if (h == 0)
            layers_[hs]->forward_skipping_zeros(x, ws.input_zeros, s);  // empty marks: the plain product
        else
            layers_[hs]->forward(ws.out[hs - 1].topRows(n), s);
        auto o = ws.out[hs].topRows(n);
        if (top) {
            o = s;
            apply_output<T>(spec_.output, o);
        } else if (training && derivatives) {
            MatrixRef<T> d = training->derivative[hs].topRows(n);
            apply_activation<T>(spec_.activation, s, &d);
        } else {
            apply_activation<T>(spec_.activation, s, nullptr);
        }
        for (std::size_t k = 0; k < pools.size(); ++k) {
            const ConstMatrixRef<T> in =
                k == 0 ? ConstMatrixRef<T>(s) : ConstMatrixRef<T>(ws.pooled[hs][k - 1].topRows(n));
            MatrixRef<T> result = k + 1 == pools.size() ? MatrixRef<T>(o) : MatrixRef<T>(ws.pooled[hs][k].topRows(n));
            pools[k].forward<T>(in, result, training ? &training->argmax[hs][k] : nullptr);
        }
    }
}

template <class T>
void Network<T>::predict(const ConstMatrixRef<T>& x, MatrixRef<T> result, Index requested_chunk) const {
    const Index chunk = inference_chunk(requested_chunk);
    require(x.cols() == input_size(),
            "input has " + std::to_string(x.cols()) + " columns, the network expects " + std::to_string(input_size()));
    ForwardWorkspace<T> ws;
    reserve(ws, std::min<Index>(chunk, std::max<Index>(x.rows(), 1)));
    for (Index first = 0; first < x.rows(); first += chunk) {
        const Index n = std::min(chunk, x.rows() - first);
        forward(x.middleRows(first, n), ws);
        result.middleRows(first, n) = ws.out.back().topRows(n);
    }
}

template <class T>
Index Network<T>::forward_macs() const {
    Index total = 0;
    for (const auto& layer : layers_) total += layer->forward_macs();
    return total;
}

template <class T>
Index Network<T>::parameter_count() const {
    Index total = 0;
    for (const auto& layer : layers_)
        for (const auto* p : layer->parameters()) total += p->size();
    return total;
}

template class Network<float>;
template class Network<double>;

}  // namespace rbp
