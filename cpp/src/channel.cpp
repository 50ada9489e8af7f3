// The channel's layout: its random streams, which layers it updates, where each hidden layer's signal
// comes from (its source) and where it enters (S^h, or O^h and then through the stage's pools). The
// feedback matrices are kept, drawn and resampled in channel_feedback.cpp; the signals and the
// updates that the channel computes from them are in channel_signal.cpp.
#include "rbp/channel.hpp"

#include <algorithm>

namespace rbp {

template <class T>
Channel<T>::Channel(const Network<T>& network, ChannelSpec spec, std::uint64_t seed) : spec_(std::move(spec)) {
    const Index layers = network.num_layers();
    const Index hidden = layers - 1;
    const auto hs = static_cast<std::size_t>(hidden);
    streams_.feedback = Rng(derive_seed(seed, "feedback"));
    streams_.dropout = Rng(derive_seed(seed, "dropout"));
    streams_.quantize = Rng(derive_seed(seed, "quantize"));
    output_size_ = network.output_size();

    frozen_.assign(static_cast<std::size_t>(layers), 0);
    for (Index layer : spec_.frozen) frozen_[static_cast<std::size_t>(layer - 1)] = 1;

    const Source default_source =
        (spec_.algorithm == Algorithm::SRBP || spec_.algorithm == Algorithm::ASRBP) ? Source::Output : Source::Above;
    sources_ = spec_.sources.empty() ? std::vector<Source>(hs, default_source) : spec_.sources;
    if (spec_.inject_after_pool)
        require(std::find(sources_.begin(), sources_.end(), Source::Output) != sources_.end(),
                "injection after the pool applies only to output-sourced feedback (srbp, or sources='output')");
    Index offset = 0;
    for (Index h = 0; h < hidden; ++h) {
        const bool above = sources_[static_cast<std::size_t>(h)] == Source::Above;
        // The signal enters at O^h (the input of layer h+1) and is routed through the stage's pools
        // to S^h, except for output-sourced feedback injected at S^h.
        const bool enters_after_pool = above || spec_.inject_after_pool;
        const Index rows = enters_after_pool ? network.layer(h + 1).input_size() : network.layer(h).output_size();
        const Index cols = above ? network.layer(h + 1).output_size() : output_size_;
        rows_.push_back(rows);
        cols_.push_back(cols);
        received_.push_back(network.layer(h).output_size());
        routes_.push_back(enters_after_pool && network.pooled(h) ? 1 : 0);
        network_pooled_.push_back(network.pooled(h) ? 1 : 0);
        offsets_.push_back(offset);
        offset += received_.back();
    }
    lay_out_feedback(network);
    masks_.resize(hs);
    const FeedbackSpec& fb = spec_.feedback;
    if (fb.congruent || fb.resample == Resample::SignConcordant)
        for (Index h = 0; h < num_feedback(); ++h)
            require(has_counterpart(network, h),
                    "congruent and sign_concordant feedback need a forward counterpart, which hidden layer " +
                        std::to_string(h + 1) +
                        "'s feedback does not have through max-pooling (the route depends on "
                        "the input)");
    draw_feedback(network);
}

template <class T>
bool Channel<T>::any_derivative() const {
    return std::any_of(spec_.derivative.begin(), spec_.derivative.end(), [](bool d) { return d; });
}

template <class T>
bool Channel<T>::frozen(Index layer) const {
    return frozen_.at(static_cast<std::size_t>(layer)) != 0;
}

// Each source file of the channel instantiates the members it defines: an explicit instantiation of
// the whole class may appear only once in a program (and a unity build sees all three files at once).
#define RBP_INSTANTIATE_CHANNEL_LAYOUT(T)                                        \
    template Channel<T>::Channel(const Network<T>&, ChannelSpec, std::uint64_t); \
    template bool Channel<T>::any_derivative() const;                            \
    template bool Channel<T>::frozen(Index) const;
RBP_INSTANTIATE_CHANNEL_LAYOUT(float)
RBP_INSTANTIATE_CHANNEL_LAYOUT(double)
#undef RBP_INSTANTIATE_CHANNEL_LAYOUT

}  // namespace rbp
