// The feedback matrices F^h of rbp, srbp and their adaptive forms: where they are kept (dense,
// stacked for one product, CSR, or a random kernel under a convolution), how they are drawn,
// resampled, read and replaced, and their forward counterparts. Per-synapse srbp's tensors are drawn
// here too. channel.cpp lays out the channel; channel_signal.cpp multiplies by these matrices.
#include "rbp/channel.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace rbp {

template <class T>
void Channel<T>::lay_out_feedback(const Network<T>& network) {
    const auto hs = rows_.size();
    const FeedbackSpec& fb = spec_.feedback;
    const bool feedback_algorithm = has_feedback();
    bool all_output_dense = feedback_algorithm && !spec_.per_synapse;
    kernels_.resize(hs);
    kernel_targets_.resize(hs);
    sparse_.assign(hs, 0);
    for (std::size_t h = 0; h < hs; ++h) {
        if (routes_[h]) all_output_dense = false;
        if (feedback_algorithm && sources_[h] == Source::Above) {
            const auto hidden = static_cast<Index>(h);
            if (const auto* conv = dynamic_cast<const ConvLayer<T>*>(&network.layer(hidden + 1))) {
                require(fb.storage != Storage::Sparse,
                        "feedback_storage='sparse' does not apply to rbp's feedback "
                        "kernels (a convolution above hidden layer " +
                            std::to_string(hidden + 1) + ")");
                require(!fb.nonzeros,
                        "feedback_nonzeros does not apply to rbp's feedback kernels (a convolution "
                        "above hidden layer " +
                            std::to_string(hidden + 1) + "); use feedback_density");
                kernels_[h] = std::make_unique<ConvLayer<T>>(conv->input_shape(), conv->filters(), conv->kernel_h(),
                                                             conv->kernel_w(), conv->stride(), conv->padding(), false);
                kernel_targets_[h] = {&kernels_[h]->kernel()};
                all_output_dense = false;
                continue;
            }
        }
        const bool sparse = feedback_algorithm && sparse_storage(cols_[h]);
        sparse_[h] = sparse ? 1 : 0;
        if (sparse || sources_[h] != Source::Output) all_output_dense = false;
    }
    if (feedback_algorithm && !spec_.per_synapse) {
        if (all_output_dense && hs > 0) {
            stacked_ = Matrix<T>::Zero(output_size_, std::accumulate(received_.begin(), received_.end(), Index(0)));
        } else {
            dense_.resize(hs);
            csr_.resize(hs);
            for (std::size_t h = 0; h < hs; ++h) {
                if (kernels_[h]) continue;
                if (sparse_[h])
                    csr_[h].resize(rows_[h], cols_[h]);
                else
                    dense_[h] = Matrix<T>::Zero(cols_[h], rows_[h]);
            }
        }
    }
}

template <class T>
bool Channel<T>::sparse_storage(Index source_size) const {
    // Auto: CSR where the sparse product beats the dense one. Its cost is a multiply-add per
    // non-zero and example at half (100-unit sources) to all (1000-unit sources) of the dense
    // kernels' rate, plus two transposes (the source into batch-major order, the result back), so
    // it wins up to about 30% density (measured with benchmarks/cpp/sparse_feedback.cpp, AVX-512
    // and AVX2: benchmarks/README.md, "Sparse feedback"), except from a narrow source (srbp's 10
    // outputs), where the dense product costs no more than writing the result and srbp's dense
    // matrices stack into one product.
    constexpr double kSparseStorageMaxDensity = 0.3;
    constexpr Index kSparseStorageMinSource = 32;
    const Storage storage = spec_.feedback.storage;
    return storage == Storage::Sparse ||
           (storage == Storage::Auto && !adaptive() && source_size >= kSparseStorageMinSource &&
            density_for(source_size) <= kSparseStorageMaxDensity);
}

template <class T>
Index Channel<T>::feedback_rows(Index hidden) const {
    if (const auto* kernel = feedback_kernel(hidden)) return kernel->kernel().rows();
    return rows_.at(static_cast<std::size_t>(hidden));
}

template <class T>
Index Channel<T>::feedback_cols(Index hidden) const {
    require(has_feedback(), "algorithm '" + to_string(spec_.algorithm) + "' has no feedback matrices");
    if (const auto* kernel = feedback_kernel(hidden)) return kernel->kernel().cols();
    return cols_.at(static_cast<std::size_t>(hidden));
}

template <class T>
bool Channel<T>::has_counterpart(const Network<T>& network, Index hidden) const {
    if (feedback_kernel(hidden)) return true;
    const auto h = static_cast<std::size_t>(hidden);
    const Index top = sources_[h] == Source::Above ? hidden + 1 : network.num_layers() - 1;
    // The product of adjoints runs from the source down to O^h; a pool on the way (or between O^h
    // and an injection at S^h) would put the input-dependent routing into it.
    if (network.pooled(hidden) && !routes_[h]) return false;
    for (Index j = hidden + 1; j < top; ++j)
        if (network.pooled(j)) return false;
    return true;
}

template <class T>
bool Channel<T>::feedback_sparse(Index hidden) const {
    return sparse_.at(static_cast<std::size_t>(hidden)) != 0;
}

template <class T>
Index Channel<T>::feedback_nonzeros(Index hidden) const {
    if (feedback_sparse(hidden)) return csr_[static_cast<std::size_t>(hidden)].nonZeros();
    if (const auto* kernel = feedback_kernel(hidden))
        return static_cast<Index>((kernel->kernel().array() != T(0)).count());
    const auto d = transposed_feedback(hidden);
    return static_cast<Index>((d.array() != T(0)).count());
}

template <class T>
MatrixRef<T> Channel<T>::transposed_feedback(Index hidden) {
    const auto h = static_cast<std::size_t>(hidden);
    if (stacked()) return stacked_.middleCols(offsets_[h], rows_[h]);
    return dense_[h];
}

template <class T>
ConstMatrixRef<T> Channel<T>::transposed_feedback(Index hidden) const {
    return const_cast<Channel<T>*>(this)->transposed_feedback(hidden);
}

template <class T>
Matrix<T> Channel<T>::feedback(Index hidden) const {
    require(has_feedback(), "algorithm '" + to_string(spec_.algorithm) + "' has no feedback matrices");
    require(hidden >= 0 && hidden < num_feedback(), "feedback index out of range");
    if (feedback_sparse(hidden)) return Matrix<T>(csr_[static_cast<std::size_t>(hidden)]);
    if (const auto* kernel = feedback_kernel(hidden)) return kernel->kernel();
    return transposed_feedback(hidden).transpose();
}

template <class T>
void Channel<T>::set_feedback(Index hidden, const ConstMatrixRef<T>& value) {
    require(has_feedback(), "algorithm '" + to_string(spec_.algorithm) + "' has no feedback matrices");
    require(hidden >= 0 && hidden < num_feedback(), "feedback index out of range");
    const auto h = static_cast<std::size_t>(hidden);
    require(value.rows() == feedback_rows(hidden) && value.cols() == feedback_cols(hidden),
            "feedback[" + std::to_string(hidden) + "] must have shape (" + std::to_string(feedback_rows(hidden)) +
                ", " + std::to_string(feedback_cols(hidden)) + ")");
    if (kernels_[h])
        kernels_[h]->set_kernel(value);
    else if (feedback_sparse(hidden))
        csr_[h] = Matrix<T>(value).sparseView();
    else
        transposed_feedback(hidden) = value.transpose();
}

template <class T>
Matrix<T> Channel<T>::counterpart(const Network<T>& network, Index hidden) const {
    std::vector<Matrix<T>> chain;
    Matrix<T> result;
    counterpart_into(network, hidden, chain, result);
    return result;
}

template <class T>
void Channel<T>::counterpart_into(const Network<T>& network, Index hidden, std::vector<Matrix<T>>& chain,
                                  Matrix<T>& result) const {
    if (!has_counterpart(network, hidden))  // (not require(): resampling must not build the message every step)
        throw std::invalid_argument("hidden layer " + std::to_string(hidden + 1) +
                                    "'s feedback has no forward counterpart through max-pooling");
    if (feedback_kernel(hidden)) {
        result = dynamic_cast<const ConvLayer<T>&>(network.layer(hidden + 1)).kernel();
        return;
    }
    const auto h = static_cast<std::size_t>(hidden);
    const Index top = sources_[h] == Source::Above ? hidden + 1 : network.num_layers() - 1;
    // Rows of P are unit signals at the source; sending them down through the adjoints of the
    // layers gives (W^top ... W^{h+1}), whose transpose is the counterpart.
    const Index units = network.layer(top).output_size();
    chain.resize(static_cast<std::size_t>(top - hidden + 1));
    chain[0].setIdentity(units, units);
    for (Index j = top; j > hidden; --j) {
        const auto stage = static_cast<std::size_t>(top - j);
        chain[stage + 1].resize(units, network.layer(j).input_size());
        network.layer(j).backward(chain[stage], chain[stage + 1]);
    }
    result = chain.back().transpose();
}

template <class T>
double Channel<T>::scale_for(Index rows, Index cols) const {
    switch (spec_.feedback.scale) {
        case FeedbackScale::Glorot: return std::sqrt(2.0 / static_cast<double>(rows + cols));
        case FeedbackScale::Unit: return 1.0;
        case FeedbackScale::Value: return spec_.feedback.scale_value;
    }
    return 1.0;
}

template <class T>
double Channel<T>::density_for(Index cols) const {
    if (spec_.feedback.nonzeros) return std::min(1.0, *spec_.feedback.nonzeros / static_cast<double>(cols));
    return spec_.feedback.density;
}

template <class T>
T Channel<T>::draw_value(Rng& rng, double scale) const {
    double z = 1.0;
    switch (spec_.feedback.distribution) {
        case Distribution::Gaussian: z = rng.normal(); break;
        case Distribution::Uniform: z = std::sqrt(3.0) * (2.0 * rng.uniform() - 1.0); break;
        case Distribution::Sign: z = rng.uniform() < 0.5 ? -1.0 : 1.0; break;
        case Distribution::Bernoulli: z = rng.uniform() < 0.5 ? 0.0 : 1.0; break;
        case Distribution::Ones: z = 1.0; break;
    }
    return static_cast<T>(spec_.feedback.mean + scale * z);
}

template <class T>
void Channel<T>::draw_layer(Index hidden, const Matrix<T>* signs, bool magnitude_only) {
    const auto h = static_cast<std::size_t>(hidden);
    const ConvLayer<T>* kernel = kernels_[h].get();
    const Index rows = kernel ? kernel->kernel().rows() : rows_[h];
    const Index cols = kernel ? kernel->kernel().cols() : cols_[h];
    const double p = kernel ? spec_.feedback.density : density_for(cols);
    // A kernel's Glorot scale is its forward counterpart's: fans channels*kh*kw and filters*kh*kw.
    const Index taps = kernel ? kernel->kernel_h() * kernel->kernel_w() : 1;
    const double scale = kernel ? scale_for(cols, rows * taps) : scale_for(rows, cols);
    Rng& rng = streams_.feedback;
    auto value = [&](Index r, Index c, bool& kept) -> T {
        kept = p >= 1.0 || rng.uniform() < p;
        if (!kept) return T(0);
        T v = draw_value(rng, scale);
        if (signs)
            v = std::abs(v) * ((*signs)(r, c) < T(0) ? T(-1) : T(1));
        else if (magnitude_only)
            v = std::abs(v);
        return v;
    };
    bool kept = false;
    if (kernel) {
        Matrix<T>& k = kernels_[h]->kernel();
        for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) k(r, c) = value(r, c, kept);
    } else if (feedback_sparse(hidden)) {
        // Filled row by row in place: a redraw (resampling every step) reuses the storage of the
        // last one and allocates only when it has more non-zeros than any before.
        SparseMatrix<T>& m = csr_[h];
        m.resize(rows, cols);
        m.reserve(static_cast<Index>(static_cast<double>(rows * cols) * std::min(1.0, p * 1.1)) + 16);
        for (Index r = 0; r < rows; ++r) {
            m.startVec(r);
            for (Index c = 0; c < cols; ++c) {
                const T v = value(r, c, kept);
                if (kept) m.insertBack(r, c) = v;
            }
        }
        m.finalize();
    } else {
        auto d = transposed_feedback(hidden);  // F(r, c) is d(c, r); drawn in the order of F's rows
        for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) d(c, r) = value(r, c, kept);
    }
}

template <class T>
void Channel<T>::draw_feedback(const Network<T>& network) {
    for (Index h = 0; h < num_feedback(); ++h) {
        if (spec_.feedback.congruent) {
            const Matrix<T> signs = counterpart(network, h);
            draw_layer(h, &signs, false);
        } else {
            draw_layer(h, nullptr, false);
        }
    }
    if (spec_.per_synapse) {
        const auto hidden = static_cast<Index>(rows_.size());
        synapse_.assign(static_cast<std::size_t>(hidden), {});
        synapse_bias_.assign(static_cast<std::size_t>(hidden), Matrix<T>());
        for (Index h = 0; h < hidden; ++h) {
            const auto hs = static_cast<std::size_t>(h);
            const Index rows = rows_[hs];
            const Index inputs = network.layer(h).input_size();
            const double scale = scale_for(rows, output_size_);
            auto& tensor = synapse_[hs];
            tensor.assign(static_cast<std::size_t>(output_size_), Matrix<T>(rows, inputs));
            // Entry (i, j) of slice k is r^h_ij[k]; drawn in (i, j, k) order.
            for (Index i = 0; i < rows; ++i)
                for (Index j = 0; j < inputs; ++j)
                    for (Index k = 0; k < output_size_; ++k)
                        tensor[static_cast<std::size_t>(k)](i, j) = draw_value(streams_.feedback, scale);
            synapse_bias_[hs].resize(rows, output_size_);
            for (Index i = 0; i < rows; ++i)
                for (Index k = 0; k < output_size_; ++k) synapse_bias_[hs](i, k) = draw_value(streams_.feedback, scale);
        }
    }
}

template <class T>
void Channel<T>::before_update(const Network<T>& network) {
    switch (spec_.feedback.resample) {
        case Resample::None: return;
        case Resample::ZeroMean:
            for (Index h = 0; h < num_feedback(); ++h) draw_layer(h, nullptr, false);
            return;
        case Resample::SignConcordant:
            counterpart_chains_.resize(static_cast<std::size_t>(num_feedback()));
            signs_.resize(static_cast<std::size_t>(num_feedback()));
            for (Index h = 0; h < num_feedback(); ++h) {
                const auto hs = static_cast<std::size_t>(h);
                counterpart_into(network, h, counterpart_chains_[hs], signs_[hs]);
                draw_layer(h, &signs_[hs], false);
            }
            return;
    }
}

// Each source file of the channel instantiates the members it defines (see channel.cpp).
#define RBP_INSTANTIATE_CHANNEL_FEEDBACK(T)                                     \
    template void Channel<T>::lay_out_feedback(const Network<T>&);              \
    template Index Channel<T>::feedback_rows(Index) const;                      \
    template Index Channel<T>::feedback_cols(Index) const;                      \
    template bool Channel<T>::has_counterpart(const Network<T>&, Index) const;  \
    template bool Channel<T>::feedback_sparse(Index) const;                     \
    template Index Channel<T>::feedback_nonzeros(Index) const;                  \
    template MatrixRef<T> Channel<T>::transposed_feedback(Index);               \
    template ConstMatrixRef<T> Channel<T>::transposed_feedback(Index) const;    \
    template Matrix<T> Channel<T>::feedback(Index) const;                       \
    template void Channel<T>::set_feedback(Index, const ConstMatrixRef<T>&);    \
    template Matrix<T> Channel<T>::counterpart(const Network<T>&, Index) const; \
    template void Channel<T>::draw_feedback(const Network<T>&);                 \
    template void Channel<T>::before_update(const Network<T>&);
RBP_INSTANTIATE_CHANNEL_FEEDBACK(float)
RBP_INSTANTIATE_CHANNEL_FEEDBACK(double)
#undef RBP_INSTANTIATE_CHANNEL_FEEDBACK

}  // namespace rbp
