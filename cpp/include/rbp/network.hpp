// A layered feedforward network A[N0, ..., NL]: layers, hidden transfer functions and the output.
#pragma once

#include "rbp/activation.hpp"
#include "rbp/layer.hpp"

#include <memory>
#include <vector>

namespace rbp {

struct NetworkSpec {
    std::vector<Index> sizes;           // N0 ... NL
    Activation activation = Activation::Tanh;
    Output output = Output::Softmax;
    bool bias = true;
    Init init = Init::GlorotNormal;
    std::uint64_t seed = 0;             // the "init" stream is derived from it
    // Connection density of each weight layer W^1..W^L, in (0, 1]; empty means all dense. A layer
    // with density < 1 is a SparseLayer whose fixed mask comes from the "connectivity" stream of
    // `seed` (one stream per layer); density exactly 1 gives a DenseLayer.
    std::vector<double> densities;
};

// Buffers of one forward/backward pass, sized for the largest batch and used through topRows(n),
// so a training loop allocates nothing after the first batch.
template <class T>
struct Workspace {
    Matrix<T> top_pre;                  // S^L (the loss reads it); hidden S^h are never stored
    std::vector<Matrix<T>> out;         // O^h, h = 1..L (index h-1)
    std::vector<Matrix<T>> derivative;  // f'(S^h) for hidden layers, index h-1
    std::vector<Matrix<T>> signal;      // B^h, h = 1..L (index h-1); B^L = e = T - O
    Matrix<T> received;                 // J^h of every hidden layer side by side (batch, sum N_h)
    Matrix<T> input;                    // gathered input rows of the batch (training only)
    Matrix<T> targets;                  // T of the batch
    // Marks of the input's all-zero blocks (gemm.hpp); input_zeros.masks is null unless the trainer
    // marked this batch and found enough of them for the first layer to skip.
    std::vector<std::uint64_t> input_zero_marks;
    ZeroBlocks input_zeros;
    Index capacity = 0;

    void reserve(const std::vector<Index>& sizes, Index batch);
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

    void initialise(std::uint64_t seed);

    // Forward pass of rows x (n <= ws.capacity). Fills ws.out, ws.top_pre and, when `derivatives`
    // is set, ws.derivative for the hidden layers. The first layer skips the blocks of x that
    // ws.input_zeros marks as zero, if any.
    void forward(const ConstMatrixRef<T>& x, Workspace<T>& ws, bool derivatives) const;

    // Output probabilities/values for many rows, in chunks, into `result` (rows, N_L).
    void predict(const ConstMatrixRef<T>& x, MatrixRef<T> result, Index chunk = 1024) const;

    Index forward_macs() const;
    Index parameter_count() const;

private:
    NetworkSpec spec_;
    std::vector<std::unique_ptr<Layer<T>>> layers_;
};

}  // namespace rbp
