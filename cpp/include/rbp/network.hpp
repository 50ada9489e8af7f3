// A layered feedforward network A[N0, ..., NL]: layers, hidden transfer functions and the output.
//
// Stage h (h = 1..L) is one weighted layer (dense, sparse or convolutional), its transfer function
// and the max-pooling layers that follow it (none for dense stages): S^h is the weighted layer's
// output, O^h = pool(f(S^h)) the stage's output and the next stage's input. N_h in `sizes` is the
// size of O^h; the size of S^h is layer(h-1).output_size() (they differ only in pooled stages).
#pragma once

#include "rbp/activation.hpp"
#include "rbp/conv.hpp"
#include "rbp/layer.hpp"

#include <memory>
#include <vector>

namespace rbp {

struct PoolSpec {
    Index size_h = 0, size_w = 0, stride = 0;
    Padding padding = Padding::Valid;
};

// One stage: a dense layer of `units` outputs, or a convolution with `filters` kernels of
// kernel_h x kernel_w, followed by `pools`.
struct StageSpec {
    bool conv = false;
    Index units = 0;
    Index filters = 0, kernel_h = 0, kernel_w = 0, stride = 1;
    Padding padding = Padding::Same;
    std::vector<PoolSpec> pools;
};

struct NetworkSpec {
    // N0 ... NL. With `stages` given they are derived from them (N0 = input_shape's size).
    std::vector<Index> sizes;
    // Stages built from `input_shape` (channels, height, width); empty: dense stages from `sizes`.
    Shape3 input_shape;
    std::vector<StageSpec> stages;
    Activation activation = Activation::Tanh;
    Output output = Output::Softmax;
    bool bias = true;
    Init init = Init::GlorotNormal;
    std::uint64_t seed = 0;  // the "init" stream is derived from it
    // Connection density of each weight layer W^1..W^L, in (0, 1]; empty means all dense. A layer
    // with density < 1 is a SparseLayer whose fixed mask comes from the "connectivity" stream of
    // `seed` (one stream per layer); density exactly 1 gives a DenseLayer.
    std::vector<double> densities;
};

// The buffers of a forward pass, sized for the largest batch and used through topRows(n), so a loop
// allocates nothing after the first batch: all that inference needs.
template <class T>
struct ForwardWorkspace {
    Matrix<T> top_pre;           // S^L (the loss reads it); hidden S^h are never stored
    std::vector<Matrix<T>> out;  // O^h, h = 1..L (index h-1)
    // Pooled stages only (empty matrices elsewhere), index h-1: f(S^h) before pooling and the outputs
    // of all but the last pool.
    std::vector<Matrix<T>> activity;
    std::vector<std::vector<Matrix<T>>> pooled;
    // The all-zero blocks of the input x (gemm.hpp) for the first layer to skip; masks is null unless
    // the caller marked this batch (the trainer does, into storage of its own).
    ZeroBlocks input_zeros;
    // The input batch as sparse rows and the first layer's weights transposed (gemm.hpp), when the
    // trainer runs its first layer on them (then the first layer is dense); null otherwise.
    const SparseRows<T>* sparse_input = nullptr;
    const Matrix<T>* sparse_weight = nullptr;
    Index capacity = 0;
};

// What training adds to a forward pass, sized and used like ForwardWorkspace: what the forward pass
// keeps for the learning channel and the channel's signals.
template <class T>
struct TrainingWorkspace {
    std::vector<Matrix<T>> derivative;  // f'(S^h) for hidden layers, index h-1
    std::vector<Matrix<T>> signal;      // B^h, h = 1..L (index h-1), at the size of S^h; B^L = e = T - O
    Matrix<T> received;                 // J^h of every hidden layer side by side (batch, sum |S^h|)
    // Pooled stages only (empty elsewhere), index h-1: the argmax of every pool, the channel's signal
    // where it arrives at O^h before being routed to S^h, and routing scratch per pool.
    std::vector<std::vector<ArgmaxMatrix>> argmax;
    std::vector<Matrix<T>> arrived;
    std::vector<std::vector<Matrix<T>>> routed;
    Index capacity = 0;
};

template <class T>
class Network {
public:
    explicit Network(const NetworkSpec& spec);

    const NetworkSpec& spec() const { return spec_; }
    Index num_layers() const { return static_cast<Index>(layers_.size()); }
    Index input_size() const { return spec_.sizes.front(); }
    Index output_size() const { return spec_.sizes.back(); }
    Layer<T>& layer(Index h) { return *layers_.at(static_cast<std::size_t>(h)); }
    const Layer<T>& layer(Index h) const { return *layers_.at(static_cast<std::size_t>(h)); }
    Activation activation() const { return spec_.activation; }
    Output output() const { return spec_.output; }
    const std::vector<MaxPool>& pools(Index h) const { return pools_.at(static_cast<std::size_t>(h)); }
    bool pooled(Index h) const { return !pools(h).empty(); }
    bool has_pools() const;
    bool has_conv() const;

    // Sizes a workspace's buffers for `batch` rows (no-op when it already holds as many).
    void reserve(ForwardWorkspace<T>& ws, Index batch) const;
    void reserve(TrainingWorkspace<T>& ws, Index batch) const;

    void initialise(std::uint64_t seed);

    // Forward pass of rows x (n <= ws.capacity), filling ws.out and ws.top_pre. The first layer skips
    // the blocks of x that ws.input_zeros marks as zero, if any.
    void forward(const ConstMatrixRef<T>& x, ForwardWorkspace<T>& ws) const;
    // The same pass for training: it also records the pools' argmax in `training` and, when
    // `derivatives` is set, f'(S^h) of the hidden layers (n <= training.capacity).
    void forward(const ConstMatrixRef<T>& x, ForwardWorkspace<T>& ws, TrainingWorkspace<T>& training,
                 bool derivatives) const;

    // Output probabilities/values for many rows, in chunks, into `result` (rows, N_L).
    void predict(const ConstMatrixRef<T>& x, MatrixRef<T> result, Index chunk = 1024) const;
    // The chunk inference uses for `requested` rows: capped for convolutional networks so that the
    // workspace stays small; dense networks use `requested` as it is.
    Index inference_chunk(Index requested) const;

    // The adjoint of stage h's pooling at the last forward pass: g (rows n, at O^h's size) routed
    // through every pool's argmax back to S^h's size, into j.
    void route(Index h, TrainingWorkspace<T>& ws, const ConstMatrixRef<T>& g, MatrixRef<T> j) const;

    Index forward_macs() const;
    Index parameter_count() const;

private:
    // Both forward passes: `training` null for inference.
    void forward_pass(const ConstMatrixRef<T>& x, ForwardWorkspace<T>& ws, TrainingWorkspace<T>* training,
                      bool derivatives) const;

    NetworkSpec spec_;
    std::vector<std::unique_ptr<Layer<T>>> layers_;
    std::vector<std::vector<MaxPool>> pools_;
};

}  // namespace rbp
