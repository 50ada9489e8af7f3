#include "rbp/trainer.hpp"

#include "rbp/gemm.hpp"
#include "rbp/parallel.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rbp {

// ---------------------------------------------------------------------------------------------
// Targets

template <class T>
Targets<T> Targets<T>::labels(const std::int64_t* data, Index rows, Index classes) {
    Targets t;
    t.labels_ = data;
    t.rows_ = rows;
    t.cols_ = classes;
    return t;
}

template <class T>
Targets<T> Targets<T>::dense(const T* data, Index rows, Index cols) {
    Targets t;
    t.dense_ = data;
    t.rows_ = rows;
    t.cols_ = cols;
    return t;
}

template <class T>
void Targets<T>::gather(const Index* rows, Index n, Matrix<T>& out) const {
    for (Index i = 0; i < n; ++i) {
        const Index src = rows ? rows[i] : i;
        auto row = out.row(i);
        if (labels_) {
            if (cols_ == 1) {
                row(0) = static_cast<T>(labels_[src]);
            } else {
                row.setZero();
                row(labels_[src]) = T(1);
            }
        } else {
            row = Eigen::Map<const RowVector<T>>(dense_ + src * cols_, cols_);
        }
    }
}

template <class T>
void Targets<T>::copy(Index first, Index n, Matrix<T>& out) const {
    std::vector<Index> rows(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = first + i;
    gather(rows.data(), n, out);
}

template <class T>
Index Targets<T>::target_class(Index i) const {
    if (labels_) return static_cast<Index>(labels_[i]);
    const T* row = dense_ + i * cols_;
    if (cols_ == 1) return row[0] >= T(0.5) ? 1 : 0;
    return static_cast<Index>(std::max_element(row, row + cols_) - row);
}

namespace {
template <class T>
Index predicted_class(const T* row, Index cols) {
    if (cols == 1) return row[0] >= T(0.5) ? 1 : 0;
    return static_cast<Index>(std::max_element(row, row + cols) - row);
}

// With bf16 products, one step rounds each weight matrix once (the forward pass and bp's channel both
// read it) and a fixed feedback matrix once per call (not once per step). The weights' copies are
// forgotten when the step ends, the update having changed them (gemm.hpp: remember_bf16_operand).
template <class T>
class StepBf16Operands {
public:
    StepBf16Operands(const std::vector<std::vector<Matrix<T>*>>& parameters, const Channel<T>& channel) {
        if constexpr (std::is_same_v<T, float>) {
            if (!bf16_products()) return;
            active_ = true;
            for (const auto& layer : parameters)
                if (!layer.empty()) remember_bf16_operand(*layer.front(), false);  // a dense layer's weight
            const bool fixed = channel.feedback_fixed();
            channel.for_each_dense_feedback([fixed](const ConstMatrixRef<T>& f) { remember_bf16_operand(f, fixed); });
        }
    }
    ~StepBf16Operands() {
        if (active_) forget_bf16_operands();
    }
    StepBf16Operands(const StepBf16Operands&) = delete;
    StepBf16Operands& operator=(const StepBf16Operands&) = delete;

private:
    bool active_ = false;
};
}  // namespace

// ---------------------------------------------------------------------------------------------
// Trainer

template <class T>
Trainer<T>::Trainer(std::shared_ptr<Network<T>> network, TrainerSpec spec)
    : network_(std::move(network)),
      spec_(resolved_trainer_spec(std::move(spec), *network_)),
      channel_(*network_, spec_.channel, spec_.seed) {
    shuffle_rng_ = Rng(derive_seed(spec_.seed, "shuffle"));
    augment_rng_ = Rng(derive_seed(spec_.seed, "augment"));
    if (spec_.augment) {
        validate(*spec_.augment);
        const Shape3& image = network_->spec().input_shape;
        require(!network_->spec().stages.empty() && (image.height > 1 || image.width > 1),
                "augment needs a network whose input is an image (a Sequential with input_shape=(channels, height, "
                "width))");
    }
    auto zeros_like_parameters = [&]() {
        std::vector<std::vector<Matrix<T>>> buffers;
        for (Index h = 0; h < network_->num_layers(); ++h) {
            std::vector<Matrix<T>> v;
            for (const auto* p : std::as_const(*network_).layer(h).parameters())
                v.push_back(Matrix<T>::Zero(p->rows(), p->cols()));
            buffers.push_back(std::move(v));
        }
        return buffers;
    };
    if (spec_.momentum > 0) velocity_ = zeros_like_parameters();
    if (spec_.channel.transform != Transform::None && spec_.channel.transform_update)
        gradient_ = zeros_like_parameters();
    auto pointers = [](std::vector<std::vector<Matrix<T>>>& buffers) {
        std::vector<std::vector<Matrix<T>*>> lists;
        for (auto& layer : buffers) {
            lists.emplace_back();
            for (auto& m : layer) lists.back().push_back(&m);
        }
        return lists;
    };
    for (Index h = 0; h < network_->num_layers(); ++h) parameters_.push_back(network_->layer(h).parameters());
    velocities_ = pointers(velocity_);
    gradients_ = pointers(gradient_);
}

template <class T>
void Trainer<T>::accumulate_layer_update(Index h, const ConstMatrixRef<T>& presynaptic, Index n, double lr,
                                         std::vector<Matrix<T>*>& targets) {
    const ChannelSpec& cs = channel_.spec();
    const auto hs = static_cast<std::size_t>(h);
    Network<T>& net = *network_;
    Layer<T>& layer = net.layer(h);
    const bool hidden = h + 1 < net.num_layers();
    const T scale = static_cast<T>(lr / static_cast<double>(n));

    if (hidden && channel_.per_synapse()) {
        channel_.accumulate_synapse_update(h, training_ws_, presynaptic, n, lr, targets);
        return;
    }
    const ConstMatrixRef<T> b = training_ws_.signal[hs].topRows(n);
    if (cs.quantize == Quantize::Update) {
        layer.accumulate_quantized_update(b, presynaptic, static_cast<T>(lr), cs.quantizer, channel_.quantize_stream(),
                                          targets);
        return;
    }
    if (hidden && cs.transform != Transform::None && cs.transform_update) {
        std::vector<Matrix<T>*>& gradient = gradients_[hs];
        for (auto* g : gradient) g->setZero();
        layer.accumulate_update(b, presynaptic, T(1) / static_cast<T>(n), gradient);
        for (std::size_t p = 0; p < gradient.size(); ++p) {
            if (cs.transform == Transform::Sign)
                *targets[p] += static_cast<T>(lr) * gradient[p]->array().sign().matrix();
            else
                *targets[p] += static_cast<T>(lr) * gradient[p]->array().abs().matrix();
        }
        return;
    }
    if (h == 0 && forward_ws_.sparse_input != nullptr)
        static_cast<DenseLayer<T>&>(layer).accumulate_update_sparse(b, sparse_batch_, scale, sparse_weight_,
                                                                    targets.size() > 1 ? targets[1] : nullptr);
    else if (h == 0)  // empty marks: the plain product
        layer.accumulate_update_skipping_zeros(b, presynaptic, forward_ws_.input_zeros, scale, targets);
    else
        layer.accumulate_update(b, presynaptic, scale, targets);
}

template <class T>
double Trainer<T>::learning_rate() const {
    return spec_.lr / (1.0 + spec_.decay * static_cast<double>(updates_));
}

template <class T>
int Trainer<T>::threads() const {
#ifdef _OPENMP
    return spec_.threads > 0 ? spec_.threads : omp_get_num_procs();
#else
    return 1;
#endif
}

template <class T>
Trainer<T>::Exclusive::Exclusive(const Trainer& trainer) : busy_(trainer.busy_) {
    if (busy_.exchange(true, std::memory_order_acquire))
        throw std::runtime_error(
            "this Trainer is already running a call in another thread; a trainer runs one call at a time "
            "(use one trainer per thread)");
}

// Fraction of the input's blocks that must be all zero before the first layer skips them. Marking
// costs one pass over the batch, and where Eigen's kernel beats the unpacked ones on the first
// layer's products (1000-unit updates: by up to 1.2x) the skipping kernels need a sixth of the work
// gone to break even; MNIST has about 40%, Fashion-MNIST and CIFAR-10 images next to none.
constexpr double kMinZeroBlocks = 0.25;

template <class T>
void Trainer<T>::mark_input_zeros(const ConstMatrixRef<T>& x) {
    forward_ws_.input_zeros = {};
    const Index words = zero_block_words<T>(x.cols());
    if (words == 0 || dynamic_cast<const DenseLayer<T>*>(&network_->layer(0)) == nullptr) return;
    const auto needed = static_cast<std::size_t>(x.rows() * words);
    if (input_zero_marks_.size() < needed) input_zero_marks_.resize(needed);  // once per batch size
    if (mark_zero_blocks<T>(x, input_zero_marks_.data()) >= kMinZeroBlocks)
        forward_ws_.input_zeros = {input_zero_marks_.data(), words};
}

// The largest fraction of non-zero inputs at which the first layer runs on sparse rows. MNIST has
// about 0.19, Fashion-MNIST 0.50, CIFAR-10 1.0. (benchmarks/README.md, "What was tried")
constexpr double kMaxSparseDensity = 0.3;

template <class T>
bool Trainer<T>::sparse_first_layer_suits(const ConstMatrixRef<T>& x) const {
    const Network<T>& net = *network_;
    if (!sparse_products_available<T>() || dynamic_cast<const DenseLayer<T>*>(&net.layer(0)) == nullptr) return false;
    if (spec_.precision != Precision::Float32 || !velocity_.empty()) return false;
    const ChannelSpec& cs = channel_.spec();
    const bool hidden = net.num_layers() > 1;
    if (cs.quantize == Quantize::Update || (hidden && channel_.per_synapse()) ||
        (hidden && cs.transform != Transform::None && cs.transform_update))
        return false;
    // Up to 256 rows spread over x: enough to tell MNIST-like data (a fifth non-zero) from dense data.
    const Index rows = x.rows(), sample = std::min<Index>(rows, 256);
    Index nonzero = 0;
    for (Index r = 0; r < sample; ++r) nonzero += (x.row(r * rows / sample).array() != T(0)).count();
    return static_cast<double>(nonzero) <= kMaxSparseDensity * static_cast<double>(sample * x.cols());
}

template <class T>
Trainer<T>::SparseFirstLayer::SparseFirstLayer(Trainer& trainer, bool on) : trainer_(trainer), on_(on) {
    if (on_) begin();
}

template <class T>
void Trainer<T>::SparseFirstLayer::begin() {
    if (!on_ || trainer_.forward_ws_.sparse_input != nullptr) return;
    to_sparse_weight<T>(static_cast<const DenseLayer<T>&>(trainer_.network_->layer(0)).weight(),
                        trainer_.sparse_weight_);
    trainer_.forward_ws_.sparse_input = &trainer_.sparse_batch_;
    trainer_.forward_ws_.sparse_weight = &trainer_.sparse_weight_;
    trainer_.sparse_first_layer_used_ = true;
}

template <class T>
void Trainer<T>::SparseFirstLayer::end() {
    if (trainer_.forward_ws_.sparse_input == nullptr) return;
    from_sparse_weight<T>(trainer_.sparse_weight_, static_cast<DenseLayer<T>&>(trainer_.network_->layer(0)).weight());
    trainer_.forward_ws_.sparse_input = nullptr;
    trainer_.forward_ws_.sparse_weight = nullptr;
}

// Asks for the next batch's data rows while this batch trains: they lie scattered over a data set larger
// than the caches, and reading them on demand cost 3-4% of an MNIST epoch at batch 32 (benchmarks/README.md).
// Into the L2 cache (locality 2), where they wait without displacing the step's operands from L1.
namespace {
template <class T>
void prefetch_rows(const ConstMatrixRef<T>& x, const Index* rows, Index n) {
#if defined(__GNUC__)
    const auto bytes = static_cast<Index>(sizeof(T)) * x.cols();
    for (Index i = 0; i < n; ++i) {
        const char* row = reinterpret_cast<const char*>(x.row(rows[i]).data());
        for (Index b = 0; b < bytes; b += 64) __builtin_prefetch(row + b, 0, 2);
    }
#else
    (void)x, (void)rows, (void)n;
#endif
}
}  // namespace

// When the first layer's product is split between threads, so is this copy. Each row it writes was
// read by both threads during the last step, and a core must take a line from the other's cache before
// writing it; on the 2-vCPU VM of benchmarks/README.md ("Two threads at batch 128") that wait, on the
// main thread alone, made the MNIST net's two-thread epoch up to 1.25x slower than one thread. Split,
// both threads wait at once. (A copy: the batch is the same however it is split.)
template <class T>
void Trainer<T>::gather_inputs(const ConstMatrixRef<T>& x, const Index* rows, Index n) {
    const int threads = first_layer_threads(n, network_->layer(0).output_size(), network_->input_size());
    split_between_threads(n, threads, Index{1}, [&](Index lo, Index len) {
        for (Index i = lo; i < lo + len; ++i) batch_input_.row(i) = x.row(rows[i]);
    });
}

template <class T>
double Trainer<T>::update_batch(const ConstMatrixRef<T>& x, Index n, const Targets<T>& targets, const Index* rows,
                                Index* correct) {
    Network<T>& net = *network_;
    const Index layers = net.num_layers();
    const auto top = static_cast<std::size_t>(layers - 1);
    const bool hidden_updates = channel_.updates_hidden_layers();
    const StepBf16Operands<T> reuse(parameters_, channel_);
    channel_.before_update(net);
    if (forward_ws_.sparse_input == nullptr) mark_input_zeros(x);  // (else train_epoch compressed the batch)
    net.forward(x, forward_ws_, training_ws_, hidden_updates && channel_.any_derivative());

    const auto out = forward_ws_.out[top].topRows(n);
    const auto t = batch_targets_.topRows(n);
    const double loss = summed_loss<T>(net.output(), forward_ws_.top_pre.topRows(n), out, t);
    if (!std::isfinite(loss)) return loss;  // diverged: no update from a NaN/inf error
    if (correct) {
        for (Index i = 0; i < n; ++i)
            if (predicted_class(out.row(i).data(), out.cols()) == targets.target_class(rows ? rows[i] : i)) ++*correct;
    }
    training_ws_.signal[top].topRows(n) = t - out;
    channel_.compute(net, training_ws_, n);

    // Every signal is computed from the weights before this step; only now are they changed.
    const double lr = learning_rate();
    channel_.adapt(forward_ws_, training_ws_, n, lr);
    for (Index h = hidden_updates ? 0 : layers - 1; h < layers; ++h) {
        if (channel_.frozen(h)) continue;
        const auto hs = static_cast<std::size_t>(h);
        const ConstMatrixRef<T> presynaptic = h == 0 ? x : ConstMatrixRef<T>(forward_ws_.out[hs - 1].topRows(n));
        std::vector<Matrix<T>*>& params = parameters_[hs];
        if (velocity_.empty()) {
            accumulate_layer_update(h, presynaptic, n, lr, params);
        } else {
            std::vector<Matrix<T>*>& velocity = velocities_[hs];
            for (auto* v : velocity) *v *= static_cast<T>(spec_.momentum);
            accumulate_layer_update(h, presynaptic, n, lr, velocity);
            for (std::size_t p = 0; p < params.size(); ++p) *params[p] += *velocity[p];
        }
    }
    ++updates_;
    return loss;
}

template <class T>
void Trainer<T>::reserve(Index batch) {
    network_->reserve(forward_ws_, batch);
    network_->reserve(training_ws_, batch);
    if (batch_input_.rows() < batch) {
        batch_input_.resize(batch, network_->input_size());
        batch_targets_.resize(batch, network_->output_size());
    }
}

template <class T>
void Trainer<T>::prepare_batch(const ConstMatrixRef<T>& x, Index n, const Targets<T>& targets, const Index* rows) {
    require(x.cols() == network_->input_size(), "input has " + std::to_string(x.cols()) +
                                                    " columns, the network expects " +
                                                    std::to_string(network_->input_size()));
    require(targets.rows() == x.rows(), "inputs and targets have different numbers of rows");
    reserve(n);
    targets.gather(rows, n, batch_targets_);
}

template <class T>
double Trainer<T>::step(const ConstMatrixRef<T>& x, const Targets<T>& targets) {
    const Index n = x.rows();
    require(n > 0, "a step needs at least one example");
    const Exclusive exclusive(*this);
    const ThreadBudget budget(threads());
    const Bf16Products bf16(spec_.precision == Precision::Bf16);
    prepare_batch(x, n, targets, nullptr);
    return update_batch(x, n, targets, nullptr, nullptr) / static_cast<double>(n);
}

template <class T>
EpochResult Trainer<T>::train_epoch(const ConstMatrixRef<T>& x, const Targets<T>& targets,
                                    const EpochControl& control) {
    const Index total = x.rows();
    require(total > 0, "cannot train on an empty data set");
    const Exclusive exclusive(*this);
    EpochCursor& epoch = epoch_;
    if (epoch.order.empty()) {
        // A new epoch: Fisher-Yates shuffle from the trainer's own stream, which continues across epochs.
        epoch = EpochCursor{};
        epoch.order.resize(static_cast<std::size_t>(total));
        for (Index i = 0; i < total; ++i) epoch.order[static_cast<std::size_t>(i)] = i;
        for (Index i = total - 1; i > 0; --i)
            std::swap(epoch.order[static_cast<std::size_t>(i)],
                      epoch.order[static_cast<std::size_t>(shuffle_rng_.below(static_cast<std::uint64_t>(i + 1)))]);
    } else {
        require(static_cast<Index>(epoch.order.size()) == total,
                "an unfinished epoch over " + std::to_string(epoch.order.size()) +
                    " examples is pending and this data set has " + std::to_string(total) +
                    "; continue it with the same data, or discard it (discard_epoch)");
    }
    const ThreadBudget budget(threads());
    const Bf16Products bf16(spec_.precision == Precision::Bf16);
    const Index batch = std::min(spec_.batch_size, total);
    prepare_batch(x, batch, targets, nullptr);
    sparse_first_layer_used_ = false;
    SparseFirstLayer sparse(*this, sparse_first_layer_suits(x));

    EpochResult result;
    result.batches = (total + batch - 1) / batch;
    double diverged_loss = 0.0;
    for (Index done = 0; epoch.next_batch < result.batches;) {
        const Index first = epoch.next_batch * batch;
        const Index n = std::min(batch, total - first);
        const Index* rows = epoch.order.data() + first;
        // A first layer that reads only the non-zeros takes them from the data, with no dense copy of the
        // batch (update_batch then reads nothing of batch_input_), or, with augmentation, from the copy.
        const bool sparse_input = forward_ws_.sparse_input != nullptr;
        const int first_threads = first_layer_threads(n, network_->layer(0).output_size(), network_->input_size());
        if (sparse_input && !spec_.augment)
            compress_rows<T>(x, rows, n, sparse_batch_, first_threads);
        else
            gather_inputs(x, rows, n);
        if (spec_.augment) {
            const Shape3& image = network_->spec().input_shape;
            augment_batch<T>(batch_input_.data(), n, image.channels, image.height, image.width, *spec_.augment,
                             augment_rng_);
            if (sparse_input) compress_rows<T>(batch_input_, nullptr, n, sparse_batch_, first_threads);
        }
        targets.gather(rows, n, batch_targets_);
        prefetch_rows(x, rows + n, std::min(batch, total - first - n));
        Index correct = 0;
        const double loss = update_batch(batch_input_.topRows(n), n, targets, rows, &correct);
        if (!std::isfinite(loss)) {
            result.diverged = true;
            diverged_loss = loss;
            break;
        }
        epoch.loss += loss;
        epoch.correct += correct;
        epoch.seen += n;
        ++epoch.next_batch;
        ++done;
        bool stop = control.max_batches > 0 && done >= control.max_batches;
        const Index k = epoch.next_batch;
        if (control.progress && control.progress_every > 0 &&
            (k % control.progress_every == 0 || k == result.batches)) {
            sparse.end();
            stop = !control.progress(k, result.batches, epoch.loss / static_cast<double>(epoch.seen)) || stop;
            sparse.begin();
            forget_bf16_operands(true);  // the callback may have set feedback matrices
        }
        if (control.interrupted && control.interrupted()) stop = true;
        if (stop) break;
    }
    result.batch = epoch.next_batch;
    result.completed = epoch.next_batch == result.batches;
    result.metrics.examples = epoch.seen;
    if (epoch.seen > 0) {
        result.metrics.loss = epoch.loss / static_cast<double>(epoch.seen);
        result.metrics.accuracy = static_cast<double>(epoch.correct) / static_cast<double>(epoch.seen);
    }
    if (result.diverged) result.metrics.loss = diverged_loss;
    if (result.completed) {
        epoch = EpochCursor{};
        unrecorded_ = {true, updates_, result.metrics};
    }
    return result;
}

template <class T>
Metrics Trainer<T>::evaluate(const ConstMatrixRef<T>& x, const Targets<T>& targets, Index requested_chunk,
                             const Interrupt& interrupted) const {
    const Index total = x.rows();
    require(total > 0, "cannot evaluate on an empty data set");
    require(x.cols() == network_->input_size(), "input has " + std::to_string(x.cols()) +
                                                    " columns, the network expects " +
                                                    std::to_string(network_->input_size()));
    require(targets.rows() == total, "inputs and targets have different numbers of rows");
    const Exclusive exclusive(*this);
    const ThreadBudget budget(threads());
    const Bf16Products bf16(spec_.precision == Precision::Bf16);
    const Network<T>& net = *network_;
    ForwardWorkspace<T> ws;
    const Index chunk = net.inference_chunk(requested_chunk);
    net.reserve(ws, std::min(chunk, total));
    Matrix<T> chunk_targets(std::min(chunk, total), net.output_size());
    const auto top = static_cast<std::size_t>(net.num_layers() - 1);
    double loss = 0.0;
    Index correct = 0;
    for (Index first = 0; first < total; first += chunk) {
        const Index n = std::min(chunk, total - first);
        net.forward(x.middleRows(first, n), ws);
        targets.copy(first, n, chunk_targets);
        const auto out = ws.out[top].topRows(n);
        loss += summed_loss<T>(net.output(), ws.top_pre.topRows(n), out, chunk_targets.topRows(n));
        for (Index i = 0; i < n; ++i)
            if (predicted_class(out.row(i).data(), out.cols()) == targets.target_class(first + i)) ++correct;
        if (interrupted && first + n < total && interrupted()) throw Interrupted();
    }
    Metrics m;
    m.examples = total;
    m.loss = loss / static_cast<double>(total);
    m.accuracy = static_cast<double>(correct) / static_cast<double>(total);
    return m;
}

template <class T>
std::vector<Matrix<T>> Trainer<T>::signals(const ConstMatrixRef<T>& x, const Targets<T>& targets) {
    const Index n = x.rows();
    require(n > 0, "signals need at least one example");
    const Exclusive exclusive(*this);
    const ThreadBudget budget(threads());
    const Bf16Products bf16(spec_.precision == Precision::Bf16);
    prepare_batch(x, n, targets, nullptr);
    const Network<T>& net = *network_;
    const auto top = static_cast<std::size_t>(net.num_layers() - 1);
    mark_input_zeros(x);
    net.forward(x, forward_ws_, training_ws_, true);
    training_ws_.signal[top].topRows(n) = batch_targets_.topRows(n) - forward_ws_.out[top].topRows(n);
    const auto streams = channel_.streams();
    channel_.compute(net, training_ws_, n);
    channel_.set_streams(streams);
    std::vector<Matrix<T>> result;
    for (std::size_t h = 0; h <= top; ++h) {
        if (h < top && (!channel_.updates_hidden_layers() || channel_.per_synapse()))
            result.push_back(Matrix<T>::Zero(n, training_ws_.signal[h].cols()));
        else
            result.push_back(training_ws_.signal[h].topRows(n));
    }
    return result;
}

namespace {
void require_generator_state(const Rng::State& state, const char* stream) {
    require((state[0] | state[1] | state[2] | state[3]) != 0,
            std::string("the ") + stream + " stream's state is all zeros (not a state a generator can reach)");
    require(state[5] <= 1, std::string("the ") + stream + " stream's cached-value flag must be 0 or 1");
}
}  // namespace

template <class T>
TrainerState<T> Trainer<T>::state() const {
    const Exclusive exclusive(*this);
    TrainerState<T> state;
    state.updates = updates_;
    state.shuffle = shuffle_rng_.state();
    const auto streams = channel_.streams();
    state.feedback_stream = streams.feedback.state();
    state.dropout_stream = streams.dropout.state();
    state.quantize_stream = streams.quantize.state();
    state.augment_stream = augment_rng_.state();
    state.velocity = velocity_;
    state.epoch = epoch_;
    state.unrecorded = unrecorded_;
    return state;
}

template <class T>
void Trainer<T>::set_state(const TrainerState<T>& state) {
    const Exclusive exclusive(*this);
    require(state.updates >= 0, "the update count must be non-negative");
    require_generator_state(state.shuffle, "shuffle");
    require_generator_state(state.feedback_stream, "feedback");
    require_generator_state(state.dropout_stream, "dropout");
    require_generator_state(state.quantize_stream, "quantize");
    require_generator_state(state.augment_stream, "augment");
    require(state.velocity.size() == velocity_.size(),
            velocity_.empty() ? "this trainer has no momentum, so it keeps no velocities"
                              : "expected velocities for " + std::to_string(velocity_.size()) + " layers, got " +
                                    std::to_string(state.velocity.size()));
    for (std::size_t h = 0; h < velocity_.size(); ++h) {
        require(state.velocity[h].size() == velocity_[h].size(),
                "layer " + std::to_string(h + 1) + " needs " + std::to_string(velocity_[h].size()) + " velocities");
        for (std::size_t p = 0; p < velocity_[h].size(); ++p) {
            const auto& v = state.velocity[h][p];
            require(v.rows() == velocity_[h][p].rows() && v.cols() == velocity_[h][p].cols(),
                    "velocity " + std::to_string(p) + " of layer " + std::to_string(h + 1) + " must have shape (" +
                        std::to_string(velocity_[h][p].rows()) + ", " + std::to_string(velocity_[h][p].cols()) + ")");
            require(v.allFinite(), "velocity " + std::to_string(p) + " of layer " + std::to_string(h + 1) +
                                       " contains NaN or infinity");
        }
    }
    const EpochCursor& epoch = state.epoch;
    if (!epoch.order.empty()) {
        const auto total = static_cast<Index>(epoch.order.size());
        std::vector<char> present(epoch.order.size(), 0);
        for (const Index i : epoch.order) {
            require(i >= 0 && i < total && !present[static_cast<std::size_t>(i)],
                    "the pending epoch's order is not a permutation of 0.." + std::to_string(total - 1));
            present[static_cast<std::size_t>(i)] = 1;
        }
        const Index batch = std::min(spec_.batch_size, total);
        const Index batches = (total + batch - 1) / batch;
        require(epoch.next_batch >= 0 && epoch.next_batch < batches,
                "the pending epoch's next batch must lie in [0, " + std::to_string(batches) + ")");
        require(epoch.seen == epoch.next_batch * batch && epoch.correct >= 0 && epoch.correct <= epoch.seen &&
                    std::isfinite(epoch.loss),
                "the pending epoch's running metrics do not match its batches");
    } else {
        require(epoch.next_batch == 0 && epoch.seen == 0 && epoch.correct == 0,
                "running metrics given without a pending epoch");
    }
    const UnrecordedEpoch& unrecorded = state.unrecorded;
    require(!unrecorded.present || (unrecorded.updates >= 0 && unrecorded.updates <= state.updates &&
                                    unrecorded.metrics.examples > 0 && unrecorded.metrics.accuracy >= 0 &&
                                    unrecorded.metrics.accuracy <= 1 && std::isfinite(unrecorded.metrics.loss)),
            "the unrecorded epoch's update count or metrics are out of range");
    updates_ = state.updates;
    unrecorded_ = unrecorded;
    shuffle_rng_.set_state(state.shuffle);
    augment_rng_.set_state(state.augment_stream);
    typename Channel<T>::Streams streams;
    streams.feedback.set_state(state.feedback_stream);
    streams.dropout.set_state(state.dropout_stream);
    streams.quantize.set_state(state.quantize_stream);
    channel_.set_streams(streams);
    for (std::size_t h = 0; h < velocity_.size(); ++h)
        for (std::size_t p = 0; p < velocity_[h].size(); ++p) velocity_[h][p] = state.velocity[h][p];
    epoch_ = state.epoch;
}

template class Targets<float>;
template class Targets<double>;
template class Trainer<float>;
template class Trainer<double>;

}  // namespace rbp
