// The learning channel: how each hidden layer receives its error signal.
//
// For hidden layer h the channel produces J^h and the postsynaptic signal B^h = f'(S^h) * J^h (or
// J^h alone when the derivative is switched off for that layer); the top layer uses B^L = e = T - O.
//   bp   J^h = (W^{h+1})^T B^{h+1}
//   sbp  J^h = (W^{h+1})^T ... (W^L)^T e        (no upper derivatives)
//   rbp  J^h = F^h B^{h+1},  F^h fixed random, shape (N_h, N_{h+1})
//   srbp J^h = F^h e,        F^h fixed random, shape (N_h, N_L)
//   top  hidden layers receive nothing and are not updated
// feedback(h) follows one convention everywhere: shape (N_h, N_source) with J^h = feedback(h) @ source.
#pragma once

#include "rbp/network.hpp"

#include <string>
#include <vector>

namespace rbp {

enum class Algorithm { BP, SBP, RBP, SRBP, Top };
Algorithm parse_algorithm(const std::string& name);
std::string to_string(Algorithm algorithm);

// Scale of the default zero-mean Gaussian feedback draw: the Glorot-normal standard deviation of
// the forward counterpart, sqrt(2 / (N_h + N_source)), or unit variance.
enum class FeedbackScale { Glorot, Unit };
FeedbackScale parse_feedback_scale(const std::string& name);
std::string to_string(FeedbackScale scale);

struct ChannelSpec {
    Algorithm algorithm = Algorithm::BP;
    std::vector<bool> derivative;  // one flag per hidden layer; empty means all on
    FeedbackScale feedback_scale = FeedbackScale::Glorot;
};

template <class T>
class Channel {
public:
    Channel(const Network<T>& network, ChannelSpec spec);

    Algorithm algorithm() const { return spec_.algorithm; }
    const ChannelSpec& spec() const { return spec_; }
    bool derivative(Index hidden) const { return spec_.derivative.at(static_cast<std::size_t>(hidden)); }
    bool any_derivative() const;
    bool updates_hidden_layers() const { return spec_.algorithm != Algorithm::Top; }
    bool has_feedback() const { return spec_.algorithm == Algorithm::RBP || spec_.algorithm == Algorithm::SRBP; }

    // Number of feedback matrices (one per hidden layer for rbp/srbp, none otherwise).
    Index num_feedback() const { return has_feedback() ? static_cast<Index>(rows_.size()) : 0; }
    Index feedback_rows(Index hidden) const { return rows_.at(static_cast<std::size_t>(hidden)); }
    Index feedback_cols(Index hidden) const;
    MatrixRef<T> feedback(Index hidden);
    ConstMatrixRef<T> feedback(Index hidden) const;
    void draw_feedback(Rng& rng);

    // Given ws.signal[L-1] = e (rows n), fills ws.signal[h] = B^h for every hidden layer.
    void compute(const Network<T>& network, Workspace<T>& ws, Index n) const;

    // Multiply-accumulates per example that the channel spends producing the hidden signals.
    Index channel_macs() const;

private:
    ChannelSpec spec_;
    std::vector<Index> rows_;      // N_h of hidden layers
    std::vector<Index> offsets_;   // row offset of each hidden layer inside `stacked_`
    Index output_size_ = 0;
    // srbp: every F^h stacked (sum N_h, N_L), so all hidden signals come from one product.
    Matrix<T> stacked_;
    // rbp: F^h of shape (N_h, N_{h+1}).
    std::vector<Matrix<T>> layered_;
};

}  // namespace rbp
