// Mini-batch SGD with momentum and Keras-style decay, whole epochs in C++.
#pragma once

#include "rbp/augment.hpp"
#include "rbp/channel.hpp"

#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <optional>

namespace rbp {

struct TrainerSpec {
    ChannelSpec channel;
    double lr = 0.1;
    double decay = 1e-6;    // lr_t = lr / (1 + decay * t), t = updates done so far
    double momentum = 0.0;  // Keras: v = momentum * v + lr_t * g; W += v
    Index batch_size = 100;
    std::uint64_t seed = 0;  // "feedback", "shuffle", "dropout", "quantize" and "augment" streams derive from it
    int threads = 0;         // 0: all cores (OpenMP's default)
    // Random translations and flips of every training batch of an epoch (augment.hpp), on the
    // trainer's copy of the batch; needs a network whose input is an image (input_shape).
    std::optional<AugmentSpec> augment;
    // bf16: every dense product of the trainer's calls rounds its operands to bfloat16 (gemm.hpp); float32
    // networks of dense layers only.
    Precision precision = Precision::Float32;
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

// Polled after every batch of an epoch and every chunk of an evaluation; returning true stops the
// call there (the bindings poll Python's signal handlers through it, so Ctrl-C takes effect at once).
using Interrupt = std::function<bool()>;

// Thrown by evaluate() when its Interrupt asks it to stop.
struct Interrupted : std::exception {
    const char* what() const noexcept override { return "interrupted"; }
};

// How train_epoch runs: progress reports, a batch limit (checkpoints between chunks of an epoch)
// and an interrupt poll.
struct EpochControl {
    Progress progress;
    Index progress_every = 0;
    Index max_batches = 0;  // > 0: return after this many batches; the epoch stays pending
    Interrupt interrupted;
};

// An epoch in progress. An epoch that train_epoch did not finish (batch limit, progress or
// interrupt, divergence) stays pending, and the next train_epoch continues it with the same order
// and running metrics, so a chunked or interrupted epoch ends exactly as an uninterrupted one.
struct EpochCursor {
    std::vector<Index> order;  // the epoch's shuffled example order; empty when no epoch is pending
    Index next_batch = 0;      // batches of the epoch done
    double loss = 0.0;         // summed loss of those batches
    Index correct = 0;         // correct predictions in them
    Index seen = 0;            // examples in them
};

// An epoch whose batches all ran but whose record the caller has not acknowledged yet (it was
// interrupted between the two): kept in the core, set in the same call that finishes the epoch, so
// that a checkpoint taken at any moment knows whether the epoch's record is missing.
struct UnrecordedEpoch {
    bool present = false;
    std::int64_t updates = 0;  // the update count when the epoch ended
    Metrics metrics;           // its running loss and accuracy
};

struct EpochResult {
    Metrics metrics;  // running loss and accuracy over the epoch's batches done so far
    bool completed = false;
    bool diverged = false;  // a batch's loss was NaN or infinite: it made no update, the epoch stopped
    Index batch = 0;        // batches of the epoch done (the diverging batch is the next one)
    Index batches = 0;      // batches in the epoch
};

// Everything a trainer changes while it trains, besides the network's parameters and the feedback
// matrices (both read and written through their own accessors): with those, a trainer given this
// state continues bit for bit as the one it was taken from.
template <class T>
struct TrainerState {
    std::int64_t updates = 0;
    Rng::State shuffle{}, feedback_stream{}, dropout_stream{}, quantize_stream{}, augment_stream{};
    std::vector<std::vector<Matrix<T>>> velocity;  // per layer, per parameter; empty without momentum
    EpochCursor epoch;
    UnrecordedEpoch unrecorded;
};

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
    bool skipped_input_zeros() const { return forward_ws_.input_zeros.masks != nullptr; }
    // Whether the last train_epoch ran the first layer on the input's non-zeros (sparse rows, gemm.hpp).
    bool sparse_first_layer() const { return sparse_first_layer_used_; }
    int threads() const;

    // One SGD step on exactly these rows; returns the batch loss before the update. A NaN or
    // infinite loss makes no update.
    double step(const ConstMatrixRef<T>& x, const Targets<T>& targets);

    // One epoch over shuffled mini-batches, or the rest of a pending one (EpochCursor); the metrics
    // are loss and accuracy measured on each batch before its update (running metrics).
    EpochResult train_epoch(const ConstMatrixRef<T>& x, const Targets<T>& targets, const EpochControl& control = {});
    bool epoch_pending() const { return !epoch_.order.empty(); }
    // Forgets a pending epoch: the next train_epoch starts a new one.
    void discard_epoch() { epoch_ = EpochCursor{}; }
    // The last finished epoch, until its record is acknowledged.
    const UnrecordedEpoch& unrecorded_epoch() const { return unrecorded_; }
    void acknowledge_epoch() { unrecorded_ = UnrecordedEpoch{}; }

    // Throws Interrupted when `interrupted` returns true between chunks.
    Metrics evaluate(const ConstMatrixRef<T>& x, const Targets<T>& targets, Index chunk = 1000,
                     const Interrupt& interrupted = {}) const;

    // The training state for checkpoints, and its restoration (shapes and ranges checked).
    TrainerState<T> state() const;
    void set_state(const TrainerState<T>& state);

    // The postsynaptic signals B^1..B^L the channel computes for this batch; nothing is updated and
    // no random stream advances, so a following step() on the same batch uses the same signals
    // (unless the feedback is resampled every batch).
    std::vector<Matrix<T>> signals(const ConstMatrixRef<T>& x, const Targets<T>& targets);

private:
    // Forward, channel and update on the batch x (rows n) with its targets in batch_targets_; returns
    // the summed loss and adds the number of correct predictions to `correct`.
    double update_batch(const ConstMatrixRef<T>& x, Index n, const Targets<T>& targets, const Index* rows,
                        Index* correct);
    // Sizes the workspaces and the batch buffers for `batch` rows (no-op when they hold as many).
    void reserve(Index batch);
    // Checks the batch x against the network and its targets, sizes the buffers for n rows and
    // gathers the targets of `rows` (null: the first n) into batch_targets_.
    void prepare_batch(const ConstMatrixRef<T>& x, Index n, const Targets<T>& targets, const Index* rows);
    // Copies the examples `rows` of x into the first n rows of batch_input_.
    void gather_inputs(const ConstMatrixRef<T>& x, const Index* rows, Index n);
    // Marks the all-zero blocks of the batch's input x (forward_ws_.input_zeros) when the first layer can
    // skip them and enough are zero to pay for it; clears the marks otherwise.
    void mark_input_zeros(const ConstMatrixRef<T>& x);
    // Whether train_epoch on x runs the first layer on sparse rows (gemm.hpp): a dense first layer that
    // the plain product updates (float32, no momentum, no update quantiser or transform, no
    // per-synapse feedback), in a build that has the sparse products, and x mostly zeros (measured on
    // a fixed sample of its rows, so that every call on the same data decides alike).
    bool sparse_first_layer_suits(const ConstMatrixRef<T>& x) const;
    // While a train_epoch runs the first layer on sparse rows, its weights live transposed in
    // sparse_weight_: moved there by the constructor, back by end() and the destructor (also when the
    // epoch stops on an exception), and around the progress callback, which may read them.
    class SparseFirstLayer {
    public:
        SparseFirstLayer(Trainer& trainer, bool on);
        ~SparseFirstLayer() { end(); }
        SparseFirstLayer(const SparseFirstLayer&) = delete;
        SparseFirstLayer& operator=(const SparseFirstLayer&) = delete;
        void begin();
        void end();

    private:
        Trainer& trainer_;
        bool on_;
    };
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
    ForwardWorkspace<T> forward_ws_;
    TrainingWorkspace<T> training_ws_;
    // The training batch as gathered (and augmented) from the data, its targets, and the marks of
    // its input's all-zero blocks (forward_ws_.input_zeros points into them).
    Matrix<T> batch_input_, batch_targets_;
    std::vector<std::uint64_t> input_zero_marks_;
    // The first layer on sparse rows: its weights transposed in panels (gemm.hpp) and the batch's
    // non-zeros; the workspace points at both while a train_epoch runs on them.
    Matrix<T> sparse_weight_;
    SparseRows<T> sparse_batch_;
    bool sparse_first_layer_used_ = false;
    Rng shuffle_rng_;
    Rng augment_rng_;
    EpochCursor epoch_;
    UnrecordedEpoch unrecorded_;
    std::int64_t updates_ = 0;

    // A trainer runs one call at a time: a second thread entering while one is inside gets a clear
    // error instead of racing on the workspace and the parameters.
    mutable std::atomic<bool> busy_{false};
    class Exclusive {
    public:
        explicit Exclusive(const Trainer& trainer);
        ~Exclusive() { busy_.store(false, std::memory_order_release); }
        Exclusive(const Exclusive&) = delete;
        Exclusive& operator=(const Exclusive&) = delete;

    private:
        std::atomic<bool>& busy_;
    };
};

}  // namespace rbp
