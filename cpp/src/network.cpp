#include "rbp/network.hpp"

#include "rbp/sparse_layer.hpp"

#include <algorithm>

namespace rbp {

template <class T>
void Workspace<T>::reserve(const std::vector<Index>& sizes, Index batch) {
    if (batch <= capacity) return;
    const std::size_t layers = sizes.size() - 1;
    out.resize(layers);
    signal.resize(layers);
    derivative.resize(layers - 1);
    Index hidden_total = 0;
    for (std::size_t h = 0; h < layers; ++h) {
        out[h].resize(batch, sizes[h + 1]);
        signal[h].resize(batch, sizes[h + 1]);
        if (h + 1 < layers) {
            derivative[h].resize(batch, sizes[h + 1]);
            hidden_total += sizes[h + 1];
        }
    }
    top_pre.resize(batch, sizes.back());
    received.resize(batch, hidden_total);
    input.resize(batch, sizes.front());
    targets.resize(batch, sizes.back());
    capacity = batch;
}

template <class T>
Network<T>::Network(const NetworkSpec& spec) : spec_(spec) {
    require(spec.sizes.size() >= 2, "a network needs at least an input and an output size");
    for (Index n : spec.sizes) require(n > 0, "layer sizes must be positive");
    const std::size_t layers = spec.sizes.size() - 1;
    if (spec_.densities.empty()) spec_.densities.assign(layers, 1.0);
    require(spec_.densities.size() == layers, "densities needs one value per weight layer (" +
                                                  std::to_string(layers) + "), got " +
                                                  std::to_string(spec_.densities.size()));
    for (double p : spec_.densities)
        require(p > 0.0 && p <= 1.0, "connection densities must lie in (0, 1], got " + std::to_string(p));
    const std::uint64_t connectivity = derive_seed(spec.seed, "connectivity");
    for (std::size_t h = 1; h <= layers; ++h) {
        const double density = spec_.densities[h - 1];
        if (density < 1.0) {
            // Each layer's mask has its own stream, so it depends only on the seed, h, its shape
            // and its density.
            Rng mask_rng(derive_seed(connectivity, "W" + std::to_string(h)));
            layers_.push_back(
                std::make_unique<SparseLayer<T>>(spec.sizes[h - 1], spec.sizes[h], spec.bias, density, mask_rng));
        } else {
            layers_.push_back(std::make_unique<DenseLayer<T>>(spec.sizes[h - 1], spec.sizes[h], spec.bias));
        }
    }
    initialise(spec.seed);
}

template <class T>
void Network<T>::initialise(std::uint64_t seed) {
    Rng rng(derive_seed(seed, "init"));
    for (auto& layer : layers_) layer->initialise(spec_.init, rng);
}

template <class T>
void Network<T>::forward(const ConstMatrixRef<T>& x, Workspace<T>& ws, bool derivatives) const {
    const Index n = x.rows();
    const Index layers = num_layers();
    for (Index h = 0; h < layers; ++h) {
        const auto hs = static_cast<std::size_t>(h);
        const bool top = h + 1 == layers;
        // A hidden layer's product lands in O^h and f is applied in place: S^h is needed by nothing
        // after f(S^h) and f'(S^h) (both from one sweep), so it costs no buffer and no copy.
        MatrixRef<T> s = top ? MatrixRef<T>(ws.top_pre.topRows(n)) : MatrixRef<T>(ws.out[hs].topRows(n));
        if (h == 0)
            layers_[hs]->forward_skipping_zeros(x, ws.input_zeros, s);  // empty marks: the plain product
        else
            layers_[hs]->forward(ws.out[hs - 1].topRows(n), s);
        auto o = ws.out[hs].topRows(n);
        if (top) {
            o = s;
            apply_output<T>(spec_.output, o);
        } else if (derivatives) {
            MatrixRef<T> d = ws.derivative[hs].topRows(n);
            apply_activation<T>(spec_.activation, o, &d);
        } else {
            apply_activation<T>(spec_.activation, o, nullptr);
        }
    }
}

template <class T>
void Network<T>::predict(const ConstMatrixRef<T>& x, MatrixRef<T> result, Index chunk) const {
    require(x.cols() == input_size(), "input has " + std::to_string(x.cols()) + " columns, the network expects " +
                                          std::to_string(input_size()));
    Workspace<T> ws;
    ws.reserve(spec_.sizes, std::min<Index>(chunk, std::max<Index>(x.rows(), 1)));
    for (Index first = 0; first < x.rows(); first += chunk) {
        const Index n = std::min(chunk, x.rows() - first);
        forward(x.middleRows(first, n), ws, false);
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

template struct Workspace<float>;
template struct Workspace<double>;
template class Network<float>;
template class Network<double>;

}  // namespace rbp
