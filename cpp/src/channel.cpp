#include "rbp/channel.hpp"

#include <cmath>

namespace rbp {

Algorithm parse_algorithm(const std::string& name) {
    if (name == "bp") return Algorithm::BP;
    if (name == "sbp") return Algorithm::SBP;
    if (name == "rbp") return Algorithm::RBP;
    if (name == "srbp") return Algorithm::SRBP;
    if (name == "top") return Algorithm::Top;
    throw std::invalid_argument("unknown algorithm '" + name + "' (expected bp, sbp, rbp, srbp or top)");
}

std::string to_string(Algorithm algorithm) {
    switch (algorithm) {
        case Algorithm::BP: return "bp";
        case Algorithm::SBP: return "sbp";
        case Algorithm::RBP: return "rbp";
        case Algorithm::SRBP: return "srbp";
        case Algorithm::Top: return "top";
    }
    return "?";
}

FeedbackScale parse_feedback_scale(const std::string& name) {
    if (name == "glorot") return FeedbackScale::Glorot;
    if (name == "unit") return FeedbackScale::Unit;
    throw std::invalid_argument("unknown feedback scale '" + name + "' (expected glorot or unit)");
}

std::string to_string(FeedbackScale scale) { return scale == FeedbackScale::Glorot ? "glorot" : "unit"; }

template <class T>
Channel<T>::Channel(const Network<T>& network, ChannelSpec spec) : spec_(std::move(spec)) {
    const Index hidden = network.num_layers() - 1;
    if (spec_.derivative.empty()) spec_.derivative.assign(static_cast<std::size_t>(hidden), true);
    require(static_cast<Index>(spec_.derivative.size()) == hidden,
            "derivative needs one flag per hidden layer (" + std::to_string(hidden) + "), got " +
                std::to_string(spec_.derivative.size()));
    output_size_ = network.output_size();
    Index offset = 0;
    for (Index h = 0; h < hidden; ++h) {
        const Index rows = network.layer(h).output_size();
        rows_.push_back(rows);
        offsets_.push_back(offset);
        offset += rows;
    }
    if (spec_.algorithm == Algorithm::SRBP) {
        stacked_ = Matrix<T>::Zero(offset, output_size_);
    } else if (spec_.algorithm == Algorithm::RBP) {
        for (Index h = 0; h < hidden; ++h)
            layered_.push_back(Matrix<T>::Zero(rows_[static_cast<std::size_t>(h)], network.layer(h + 1).output_size()));
    }
}

template <class T>
bool Channel<T>::any_derivative() const {
    for (bool d : spec_.derivative)
        if (d) return true;
    return false;
}

template <class T>
Index Channel<T>::feedback_cols(Index hidden) const {
    require(has_feedback(), "algorithm '" + to_string(spec_.algorithm) + "' has no feedback matrices");
    if (spec_.algorithm == Algorithm::SRBP) return output_size_;
    return layered_.at(static_cast<std::size_t>(hidden)).cols();
}

template <class T>
MatrixRef<T> Channel<T>::feedback(Index hidden) {
    require(has_feedback(), "algorithm '" + to_string(spec_.algorithm) + "' has no feedback matrices");
    require(hidden >= 0 && hidden < num_feedback(), "feedback index out of range");
    const auto h = static_cast<std::size_t>(hidden);
    if (spec_.algorithm == Algorithm::SRBP) return stacked_.middleRows(offsets_[h], rows_[h]);
    return layered_[h];
}

template <class T>
ConstMatrixRef<T> Channel<T>::feedback(Index hidden) const {
    return const_cast<Channel<T>*>(this)->feedback(hidden);
}

template <class T>
void Channel<T>::draw_feedback(Rng& rng) {
    for (Index h = 0; h < num_feedback(); ++h) {
        auto f = feedback(h);
        const double stddev = spec_.feedback_scale == FeedbackScale::Unit
                                  ? 1.0
                                  : std::sqrt(2.0 / static_cast<double>(f.rows() + f.cols()));
        for (Index r = 0; r < f.rows(); ++r)
            for (Index c = 0; c < f.cols(); ++c) f(r, c) = static_cast<T>(stddev * rng.normal());
    }
}

template <class T>
void Channel<T>::compute(const Network<T>& network, Workspace<T>& ws, Index n) const {
    const Index layers = network.num_layers();
    const Index hidden = layers - 1;
    const auto error = ws.signal[static_cast<std::size_t>(hidden)].topRows(n);
    if (spec_.algorithm == Algorithm::Top || hidden == 0) return;

    auto received = [&](Index h) { return ws.received.topRows(n).middleCols(offsets_[static_cast<std::size_t>(h)], rows_[static_cast<std::size_t>(h)]); };
    // B^h = f'(S^h) * J^h, or J^h alone.
    auto finish = [&](Index h) {
        const auto hs = static_cast<std::size_t>(h);
        auto b = ws.signal[hs].topRows(n);
        if (spec_.derivative[hs])
            b.array() = ws.derivative[hs].topRows(n).array() * received(h).array();
        else
            b = received(h);
    };

    switch (spec_.algorithm) {
        case Algorithm::BP:
            for (Index h = hidden - 1; h >= 0; --h) {
                network.layer(h + 1).backward(ws.signal[static_cast<std::size_t>(h + 1)].topRows(n), received(h));
                finish(h);
            }
            break;
        case Algorithm::SBP:
            // The error travels down through the transposed forward matrices with no derivatives;
            // each layer applies only its own f'.
            for (Index h = hidden - 1; h >= 0; --h) {
                if (h == hidden - 1)
                    network.layer(h + 1).backward(error, received(h));
                else
                    network.layer(h + 1).backward(received(h + 1), received(h));
                finish(h);
            }
            break;
        case Algorithm::RBP:
            for (Index h = hidden - 1; h >= 0; --h) {
                received(h).noalias() =
                    ws.signal[static_cast<std::size_t>(h + 1)].topRows(n) * layered_[static_cast<std::size_t>(h)].transpose();
                finish(h);
            }
            break;
        case Algorithm::SRBP:
            // One product with the stacked matrices gives every hidden layer's J at once.
            ws.received.topRows(n).noalias() = error * stacked_.transpose();
            for (Index h = 0; h < hidden; ++h) finish(h);
            break;
        case Algorithm::Top:
            break;
    }
}

template <class T>
Index Channel<T>::channel_macs() const {
    switch (spec_.algorithm) {
        case Algorithm::SRBP: return stacked_.size();
        case Algorithm::RBP: {
            Index total = 0;
            for (const auto& f : layered_) total += f.size();
            return total;
        }
        case Algorithm::BP:
        case Algorithm::SBP: {
            Index total = 0;
            for (std::size_t h = 0; h + 1 < rows_.size(); ++h) total += rows_[h] * rows_[h + 1];
            if (!rows_.empty()) total += rows_.back() * output_size_;
            return total;
        }
        case Algorithm::Top: return 0;
    }
    return 0;
}

template class Channel<float>;
template class Channel<double>;

}  // namespace rbp
