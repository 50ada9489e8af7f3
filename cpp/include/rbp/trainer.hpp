// Mini-batch SGD with momentum and Keras-style decay, whole epochs in C++.
#pragma once

#include "rbp/channel.hpp"

#include <functional>
#include <memory>
#include <optional>

namespace rbp {

struct TrainerSpec {
    ChannelSpec channel;
    double lr = 0.1;
    double decay = 1e-6;        // lr_t = lr / (1 + decay * t), t = updates done so far
    double momentum = 0.0;      // Keras: v = momentum * v + lr_t * g; W += v
    Index batch_size = 100;
    std::uint64_t seed = 0;     // "feedback", "shuffle", "dropout" and "quantize" streams derive from it
    int threads = 0;            // 0: all cores (OpenMP's default)
};

// `spec` checked against `network` with the defaults that depend on other options filled in (every
// hidden layer's derivative on, quantize_alpha by mode): the one check of a trainer's options, in
// options.cpp. Errors are std::invalid_argument naming each option as rbp_native.Trainer spells it.
template <class T>
TrainerSpec resolved_trainer_spec(TrainerSpec spec, const Network<T>& network);

// Training targets: class labels (one-hot built on the fly; for a single output the label itself
// is the target) or a dense (rows, N_L) target matrix.
template <class T>
class Targets {
public:
    static Targets labels(const std::int64_t* data, Index rows, Index classes);
    static Targets dense(const T* data, Index rows, Index cols);

    Index rows() const { return rows_; }
    bool has_labels() const { return labels_ != nullptr; }
    // Writes the targets of examples rows[0..n) into out.topRows(n).
    void gather(const Index* rows, Index n, Matrix<T>& out) const;
    void copy(Index first, Index n, Matrix<T>& out) const;
    // The class of example i (the label, or the argmax of its target row).
    Index target_class(Index i) const;

private:
    const std::int64_t* labels_ = nullptr;
    const T* dense_ = nullptr;
    Index rows_ = 0;
    Index cols_ = 0;
};

struct Metrics {
    double loss = 0.0;
    double accuracy = 0.0;
    Index examples = 0;
};

// Called every k batches with (batches done, batches in the epoch, running mean loss); returning
// false stops the epoch early (after the current batch).
using Progress = std::function<bool(Index, Index, double)>;

template <class T>
class Trainer {
public:
    Trainer(std::shared_ptr<Network<T>> network, TrainerSpec spec);
    // Not copyable: it keeps pointers into its own buffers (see parameters_).
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    const TrainerSpec& spec() const { return spec_; }
    Network<T>& network() { return *network_; }
    const Network<T>& network() const { return *network_; }
    Channel<T>& channel() { return channel_; }
    const Channel<T>& channel() const { return channel_; }
    std::int64_t updates() const { return updates_; }
    double learning_rate() const;  // the rate the next update will use
    // Whether the last batch's first layer skipped the input's zero blocks (gemm.hpp).
    bool skipped_input_zeros() const { return ws_.input_zeros.masks != nullptr; }
    int threads() const;

    // One SGD step on exactly these rows; returns the batch loss before the update.
    double step(const ConstMatrixRef<T>& x, const Targets<T>& targets);

    // One epoch over shuffled mini-batches; returns loss and accuracy measured on each batch
    // before its update (running metrics). `completed` reports whether the epoch ran to the end.
    Metrics train_epoch(const ConstMatrixRef<T>& x, const Targets<T>& targets, const Progress& progress,
                        Index progress_every, bool* completed = nullptr);

    Metrics evaluate(const ConstMatrixRef<T>& x, const Targets<T>& targets, Index chunk = 1000) const;

    // The postsynaptic signals B^1..B^L the channel computes for this batch; nothing is updated and
    // no random stream advances, so a following step() on the same batch uses the same signals
    // (unless the feedback is resampled every batch).
    std::vector<Matrix<T>> signals(const ConstMatrixRef<T>& x, const Targets<T>& targets);

private:
    // Forward, channel and update on ws_.input/ws_.targets (rows n); returns summed loss and
    // adds the number of correct predictions to `correct`.
    double update_batch(const ConstMatrixRef<T>& x, Index n, const Targets<T>& targets, const Index* rows,
                        Index* correct);
    void prepare_batch(const ConstMatrixRef<T>& x, Index n, const Targets<T>& targets, const Index* rows);
    void apply_threads() const;
    // Marks the all-zero blocks of the batch's input x (ws_.input_zeros) when the first layer can
    // skip them and enough are zero to pay for it; clears the marks otherwise.
    void mark_input_zeros(const ConstMatrixRef<T>& x);
    // Adds this layer's update for the batch into `targets` (parameters or velocities).
    void accumulate_layer_update(Index h, const ConstMatrixRef<T>& presynaptic, Index n, double lr,
                                 std::vector<Matrix<T>*>& targets);

    std::shared_ptr<Network<T>> network_;
    TrainerSpec spec_;
    Channel<T> channel_;
    std::vector<std::vector<Matrix<T>>> velocity_;  // per layer, per parameter (momentum only)
    std::vector<std::vector<Matrix<T>>> gradient_;  // per layer, per parameter (update transforms only)
    // Pointer lists into the layers' parameters and into velocity_/gradient_, built once so that a
    // step allocates nothing (the layers and these buffers never move while the trainer lives).
    std::vector<std::vector<Matrix<T>*>> parameters_, velocities_, gradients_;
    Matrix<T> synapse_weighted_, synapse_product_;  // per-synapse srbp's scratch
    Workspace<T> ws_;
    Rng shuffle_rng_;
    std::vector<Index> order_;
    std::int64_t updates_ = 0;
};

}  // namespace rbp
