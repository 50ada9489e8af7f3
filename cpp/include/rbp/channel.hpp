// The learning channel: how each hidden layer receives its error signal. docs/channels.md defines
// every option; this is its implementation, in three files: channel.cpp (the layout: sources, where
// the signals enter, frozen layers), channel_feedback.cpp (the feedback matrices: storage, drawing,
// resampling, access) and channel_signal.cpp (the signals, per-synapse updates, adaptation, costs).
//
// For hidden layer h the channel produces J^h and the postsynaptic signal B^h = f'(S^h) * J^h (or
// J^h alone when the derivative is off for that layer); the top layer uses B^L = e = T - O.
//   bp   J^h = (W^{h+1})^T B^{h+1}
//   sbp  J^h = (W^{h+1})^T ... (W^L)^T e        (no upper derivatives)
//   rbp  J^h = F^h B^{h+1}, F^h fixed random, shape (N_h, N_{h+1})     (arbp: F^h adapted)
//   srbp J^h = F^h e,       F^h fixed random, shape (N_h, N_L)         (asrbp: F^h adapted)
//   top  hidden layers receive nothing and are not updated
// feedback(h) follows one convention everywhere: shape (N_h, N_source) with J^h = feedback(h) @ source.
//
// Through pooled stages (conv.hpp, network.hpp) bp, sbp and rbp deliver their signal at O^h (the
// input of the layer above) and the stage's pools route it back through their argmax to S^h's size;
// srbp injects F^h e at S^h (default) or at O^h and routes it (inject_after_pool). rbp under a
// convolution uses a random kernel of that convolution's shape in its transposed convolution.
// docs/conv.md defines these conventions.
#pragma once

#include "rbp/network.hpp"
#include "rbp/options.hpp"
#include "rbp/quantize.hpp"

#include <Eigen/SparseCore>

#include <optional>
#include <string>
#include <vector>

namespace rbp {

// The options of the channel (options.hpp names them; resolved_trainer_spec checks them).
struct FeedbackSpec {
    Distribution distribution = Distribution::Gaussian;
    FeedbackScale scale = FeedbackScale::Glorot;
    double scale_value = 1.0;  // used when scale == Value
    double mean = 0.0;
    double density = 1.0;            // probability that an entry is non-zero
    std::optional<double> nonzeros;  // expected non-zeros per receiving neuron: density = n / N_source
    Storage storage = Storage::Auto;
    bool congruent = false;
    Resample resample = Resample::None;
};

struct ChannelSpec {
    Algorithm algorithm = Algorithm::BP;
    std::vector<bool> derivative;  // one flag per hidden layer; empty means all on
    std::vector<Source> sources;   // one per hidden layer; empty means the algorithm's default
    FeedbackSpec feedback;
    double feedback_lr_scale = 1.0;  // rho of the adaptive algorithms
    bool per_synapse = false;
    Transform transform = Transform::None;
    bool transform_update = false;  // apply the transform to the batch update instead of the signal
    double dropout = 0.0;
    bool dropout_inverted = false;
    std::vector<Index> frozen;  // paper numbering, 1..L
    Quantize quantize = Quantize::None;
    std::optional<double> quantize_alpha;  // unset: default_quantize_alpha(quantize)
    Quantizer quantizer;                   // its alpha resolved from quantize_alpha
    // Output-sourced feedback of a pooled stage enters at O^h and is routed through the pools'
    // argmax, instead of entering at S^h.
    bool inject_after_pool = false;
};

template <class T>
using SparseMatrix = Eigen::SparseMatrix<T, Eigen::RowMajor>;

template <class T>
class Channel {
public:
    // `spec` as resolved_trainer_spec returns it: checked, with its defaults filled in.
    Channel(const Network<T>& network, ChannelSpec spec, std::uint64_t seed);

    const ChannelSpec& spec() const { return spec_; }
    Algorithm algorithm() const { return spec_.algorithm; }
    bool derivative(Index hidden) const { return spec_.derivative.at(static_cast<std::size_t>(hidden)); }
    bool any_derivative() const;
    bool updates_hidden_layers() const { return spec_.algorithm != Algorithm::Top; }
    bool has_feedback() const { return rbp::has_feedback(spec_.algorithm); }
    bool adaptive() const { return spec_.algorithm == Algorithm::ARBP || spec_.algorithm == Algorithm::ASRBP; }
    bool frozen(Index layer) const;  // zero-based layer index
    // Per-synapse srbp: a random error for every synapse instead of a signal per neuron; the channel
    // then builds the hidden layers' updates itself (accumulate_synapse_update).
    bool per_synapse() const { return spec_.per_synapse; }
    Source source(Index hidden) const { return sources_.at(static_cast<std::size_t>(hidden)); }

    // Number of feedback matrices F^h: one per hidden layer for the feedback algorithms, none
    // otherwise (per-synapse srbp keeps tensors instead, see synapse_feedback).
    Index num_feedback() const { return has_feedback() && !spec_.per_synapse ? static_cast<Index>(rows_.size()) : 0; }
    Index feedback_rows(Index hidden) const;
    // A feedback kernel (rbp under a convolution): the convolution it stands in for, else null.
    const ConvLayer<T>* feedback_kernel(Index hidden) const {
        return kernels_.at(static_cast<std::size_t>(hidden)).get();
    }
    // Whether counterpart() exists: not through max-pooling, whose routing depends on the input.
    bool has_counterpart(const Network<T>& network, Index hidden) const;
    Index feedback_cols(Index hidden) const;
    bool feedback_sparse(Index hidden) const;
    Index feedback_nonzeros(Index hidden) const;
    // fn(m) for each dense matrix the channel's products read (the stacked one, or each hidden layer's
    // stored F^h transposed), without allocating (the trainer calls it at every bf16 step); and whether
    // they stay as they are from step to step (not adapted, not redrawn).
    template <class F>
    void for_each_dense_feedback(F&& fn) const {
        if (stacked()) {
            fn(ConstMatrixRef<T>(stacked_));
            return;
        }
        for (const auto& d : dense_)
            if (d.size() > 0) fn(ConstMatrixRef<T>(d));
    }
    bool feedback_fixed() const { return !adaptive() && spec_.feedback.resample == Resample::None; }
    // Dense copy of F^h, and replacement from a dense matrix (sparse storage keeps its non-zeros).
    Matrix<T> feedback(Index hidden) const;
    void set_feedback(Index hidden, const ConstMatrixRef<T>& value);
    // The forward counterpart of F^h: (W^{h+1})^T for source Above, (W^L ... W^{h+1})^T for Output;
    // a feedback kernel's is the forward kernel.
    Matrix<T> counterpart(const Network<T>& network, Index hidden) const;

    // Per-synapse random error: R^h as N_L matrices of shape (N_h, N_{h-1}), and bias vectors (N_h, N_L).
    const std::vector<Matrix<T>>& synapse_feedback(Index hidden) const {
        return synapse_.at(static_cast<std::size_t>(hidden));
    }
    const Matrix<T>& synapse_bias_feedback(Index hidden) const {
        return synapse_bias_.at(static_cast<std::size_t>(hidden));
    }

    // Draws every F^h (and per-synapse tensor) from the feedback stream, respecting congruence.
    void draw_feedback(const Network<T>& network);
    // Called before each update: redraws the matrices when resampling is on.
    void before_update(const Network<T>& network);
    // Given ws.signal[L-1] = e (rows n) and what the training forward pass keeps in ws (f'(S^h), the
    // pools' argmax), fills ws.signal[h] = B^h for every hidden layer (per-synapse srbp: none).
    // Draws dropout masks and stochastic-rounding noise from the channel's streams.
    void compute(const Network<T>& network, TrainingWorkspace<T>& ws, Index n);
    // Per-synapse srbp's update of hidden layer `hidden` for the batch (rows n) whose error e is
    // ws.signal[L-1]: adds lr/n sum_b D_bi (e_b . r_ij) O^{h-1}_bj to each weight W_ij (targets[0]) and
    // lr/n sum_b D_bi (e_b . r_i) to each bias b_i (targets[1], if any), with D = f'(S^h) (1 where the
    // derivative is off) and r the per-synapse feedback (synapse_feedback, synapse_bias_feedback).
    void accumulate_synapse_update(Index hidden, const TrainingWorkspace<T>& ws, const ConstMatrixRef<T>& presynaptic,
                                   Index n, double lr, std::vector<Matrix<T>*>& targets);
    // The adaptive algorithms' feedback update, from the forward pass and the signals of the same batch.
    void adapt(const ForwardWorkspace<T>& forward, const TrainingWorkspace<T>& ws, Index n, double lr);

    // Streams of the channel, saved and restored so that inspecting signals changes nothing.
    struct Streams {
        Rng feedback, dropout, quantize;
    };
    Streams streams() const { return streams_; }
    void set_streams(const Streams& s) { streams_ = s; }
    // The dropout masks of the last signal computation: one per hidden layer, rows = that batch's.
    std::vector<ConstMatrixRef<T>> dropout_masks() const;
    Rng& quantize_stream() { return streams_.quantize; }

    // Multiply-accumulates per example that producing the hidden signals takes, counting the
    // non-zero feedback entries only (the paper's channel complexity; bp and sbp multiply by the
    // forward weights above each hidden layer, sparse layers included). Sparse feedback kept in dense
    // storage (feedback_storage "dense", or "auto" where the dense product is faster) multiplies its
    // zeros as well, so the kernels then do more work than this count.
    Index channel_macs(const Network<T>& network) const;

private:
    // The feedback's helpers (channel_feedback.cpp). The kernels, storage and stacking of every F^h,
    // chosen once by the constructor:
    void lay_out_feedback(const Network<T>& network);
    // The storage heuristic: whether F^h with `source_size` columns is kept in CSR.
    bool sparse_storage(Index source_size) const;
    bool stacked() const { return stacked_.size() > 0; }
    // Dense F^h kept transposed, (N_source, N_h), like a forward weight matrix W^{h+1} (N_{h+1}, N_h):
    // the channel's product J^h = B F^T is then J^h = B (F^T), A B in gemm's terms, which runs on the
    // faster kernels at the short depth N_source (as J = G W does for bp).
    MatrixRef<T> transposed_feedback(Index hidden);
    ConstMatrixRef<T> transposed_feedback(Index hidden) const;
    double scale_for(Index rows, Index cols) const;
    double density_for(Index cols) const;
    T draw_value(Rng& rng, double scale) const;
    void draw_layer(Index hidden, const Matrix<T>* signs, bool magnitude_only);
    // counterpart(), built in `chain` (one buffer per layer it passes) into `result`: once the
    // buffers have their sizes, no allocation (sign-concordant resampling does this every step).
    void counterpart_into(const Network<T>& network, Index hidden, std::vector<Matrix<T>>& chain,
                          Matrix<T>& result) const;

    // The layout (channel.cpp).
    ChannelSpec spec_;
    std::vector<Source> sources_;
    std::vector<Index> rows_;           // where the signal enters: |O^h| (source Above, or after the pools), else |S^h|
    std::vector<Index> cols_;           // N_source of hidden layers
    std::vector<Index> received_;       // |S^h| of hidden layers (J^h's width)
    std::vector<Index> offsets_;        // column offsets of J^h in the workspace's `received` (and in stacked_)
    std::vector<char> routes_;          // whether the entering signal is routed through the stage's pools
    std::vector<char> network_pooled_;  // whether the stage has pools
    std::vector<char> frozen_;          // per layer (zero-based), L entries
    Index output_size_ = 0;

    // The feedback (channel_feedback.cpp).
    std::vector<std::unique_ptr<ConvLayer<T>>> kernels_;   // rbp's random kernels (null where W^{h+1} is dense)
    std::vector<std::vector<Matrix<T>*>> kernel_targets_;  // {&kernel} per kernel, for the adaptive update
    std::vector<char> sparse_;                             // storage of each layer
    // When every hidden layer is fed from the output with dense storage, the transposed matrices are
    // stacked side by side, (N_L, sum N_h), so that all hidden signals come from one product.
    Matrix<T> stacked_;
    std::vector<Matrix<T>> dense_;  // F^h transposed, (N_source, N_h), when not stacked
    std::vector<SparseMatrix<T>> csr_;
    std::vector<std::vector<Matrix<T>>> synapse_;
    std::vector<Matrix<T>> synapse_bias_;
    std::vector<std::vector<Matrix<T>>> counterpart_chains_;  // per hidden layer, for resampling
    std::vector<Matrix<T>> signs_;                            // per hidden layer, for resampling

    // The signals' buffers (channel_signal.cpp).
    std::vector<Matrix<T>> masks_;  // grown to the largest batch, never shrunk: a step allocates nothing
    Index mask_rows_ = 0;           // rows of the last batch
    Matrix<T> synapse_weighted_, synapse_product_;  // per-synapse srbp's scratch, grown like masks_

    Streams streams_;
};

}  // namespace rbp
