#include "rbp/channel.hpp"

#include "rbp/gemm.hpp"

#include "batch_major_sparse.hpp"

#include <algorithm>
#include <cmath>

namespace rbp {

namespace {

// J = S F^T with F (N_h x N_source) in CSR: the sparse layers' batch-major kernel (S^T and J^T in
// scratch buffers, one contiguous axpy over the batch per non-zero), so the product costs one
// multiply-add per non-zero and example plus the two transposes.
template <class T>
void sparse_feedback_product(const ConstMatrixRef<T>& s, const SparseMatrix<T>& f, MatrixRef<T> j) {
    if (!f.isCompressed()) {
        j.noalias() = s * f.transpose();
        return;
    }
    sparse_kernels::csr_times_transpose<T>(s, f.outerIndexPtr(), f.innerIndexPtr(), f.valuePtr(), nullptr, f.nonZeros(),
                                           j);
}

}  // namespace

template <class T>
Channel<T>::Channel(const Network<T>& network, ChannelSpec spec, std::uint64_t seed) : spec_(std::move(spec)) {
    const Index layers = network.num_layers();
    const Index hidden = layers - 1;
    const auto hs = static_cast<std::size_t>(hidden);
    streams_.feedback = Rng(derive_seed(seed, "feedback"));
    streams_.dropout = Rng(derive_seed(seed, "dropout"));
    streams_.quantize = Rng(derive_seed(seed, "quantize"));
    output_size_ = network.output_size();

    const FeedbackSpec& fb = spec_.feedback;
    const bool feedback_algorithm = has_feedback();
    frozen_.assign(static_cast<std::size_t>(layers), 0);
    for (Index layer : spec_.frozen) frozen_[static_cast<std::size_t>(layer - 1)] = 1;

    const Source default_source =
        (spec_.algorithm == Algorithm::SRBP || spec_.algorithm == Algorithm::ASRBP) ? Source::Output : Source::Above;
    sources_ = spec_.sources.empty() ? std::vector<Source>(hs, default_source) : spec_.sources;
    if (spec_.inject_after_pool)
        require(std::find(sources_.begin(), sources_.end(), Source::Output) != sources_.end(),
                "injection after the pool applies only to output-sourced feedback (srbp, or sources='output')");
    bool all_output_dense = feedback_algorithm && !spec_.per_synapse;
    Index offset = 0;
    kernels_.resize(hs);
    kernel_targets_.resize(hs);
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
        if (routes_.back()) all_output_dense = false;
        if (feedback_algorithm && above) {
            if (const auto* conv = dynamic_cast<const ConvLayer<T>*>(&network.layer(h + 1))) {
                require(fb.storage != Storage::Sparse,
                        "feedback_storage='sparse' does not apply to rbp's feedback "
                        "kernels (a convolution above hidden layer " +
                            std::to_string(h + 1) + ")");
                require(!fb.nonzeros,
                        "feedback_nonzeros does not apply to rbp's feedback kernels (a convolution "
                        "above hidden layer " +
                            std::to_string(h + 1) + "); use feedback_density");
                kernels_[static_cast<std::size_t>(h)] =
                    std::make_unique<ConvLayer<T>>(conv->input_shape(), conv->filters(), conv->kernel_h(),
                                                   conv->kernel_w(), conv->stride(), conv->padding(), false);
                kernel_targets_[static_cast<std::size_t>(h)] = {&kernels_[static_cast<std::size_t>(h)]->kernel()};
                sparse_.push_back(0);
                all_output_dense = false;
                continue;
            }
        }
        // Auto: CSR where the sparse product beats the dense one. Its cost is a multiply-add per
        // non-zero and example at half (100-unit sources) to all (1000-unit sources) of the dense
        // kernels' rate, plus two transposes (the source into batch-major order, the result back), so
        // it wins up to about 30% density (measured with benchmarks/cpp/sparse_feedback.cpp, AVX-512
        // and AVX2: benchmarks/README.md, "Sparse feedback"), except from a narrow source (srbp's 10
        // outputs), where the dense product costs no more than writing the result and srbp's dense
        // matrices stack into one product.
        constexpr double kSparseStorageMaxDensity = 0.3;
        constexpr Index kSparseStorageMinSource = 32;
        const bool sparse =
            feedback_algorithm && (fb.storage == Storage::Sparse ||
                                   (fb.storage == Storage::Auto && !adaptive() && cols >= kSparseStorageMinSource &&
                                    density_for(cols) <= kSparseStorageMaxDensity));
        sparse_.push_back(sparse ? 1 : 0);
        if (sparse || sources_[static_cast<std::size_t>(h)] != Source::Output) all_output_dense = false;
    }
    if (feedback_algorithm && !spec_.per_synapse) {
        if (all_output_dense && hidden > 0) {
            stacked_ = Matrix<T>::Zero(output_size_, offset);
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
    masks_.resize(hs);
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
std::vector<ConstMatrixRef<T>> Channel<T>::dropout_masks() const {
    std::vector<ConstMatrixRef<T>> result;
    for (const auto& mask : masks_) result.emplace_back(mask.topRows(std::min(mask_rows_, mask.rows())));
    return result;
}

template <class T>
bool Channel<T>::any_derivative() const {
    return std::any_of(spec_.derivative.begin(), spec_.derivative.end(), [](bool d) { return d; });
}

template <class T>
bool Channel<T>::frozen(Index layer) const {
    return frozen_.at(static_cast<std::size_t>(layer)) != 0;
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

template <class T>
void Channel<T>::compute(const Network<T>& network, Workspace<T>& ws, Index n) {
    const Index hidden = network.num_layers() - 1;
    // Per-synapse srbp has no per-neuron signal: the trainer builds each weight's update itself.
    if (spec_.algorithm == Algorithm::Top || spec_.per_synapse || hidden == 0) return;
    const auto error = ws.signal[static_cast<std::size_t>(hidden)].topRows(n);
    auto received = [&](Index h) {
        const auto hs = static_cast<std::size_t>(h);
        return ws.received.topRows(n).middleCols(offsets_[hs], received_[hs]);
    };
    if (stacked()) gemm<T>(T(1), error, false, stacked_, false, ws.received.topRows(n), false);

    for (Index h = hidden - 1; h >= 0; --h) {
        const auto hs = static_cast<std::size_t>(h);
        auto j = received(h);
        // Where the signal arrives: J^h itself, or O^h's size when the stage's pools route it to J^h.
        MatrixRef<T> arrival = routes_[hs] ? MatrixRef<T>(ws.arrived[hs].topRows(n)) : MatrixRef<T>(j);
        switch (spec_.algorithm) {
            case Algorithm::BP: network.layer(h + 1).backward(ws.signal[hs + 1].topRows(n), arrival); break;
            case Algorithm::SBP:
                // The error travels down through the transposed forward matrices with no
                // derivatives; each layer applies only its own f'.
                if (h == hidden - 1)
                    network.layer(h + 1).backward(error, arrival);
                else
                    network.layer(h + 1).backward(received(h + 1), arrival);
                break;
            default:
                if (!stacked()) {
                    const auto source = sources_[hs] == Source::Above ? ws.signal[hs + 1].topRows(n) : error;
                    if (kernels_[hs])
                        kernels_[hs]->backward(source, arrival);  // transposed convolution with the random kernel
                    else if (feedback_sparse(h))
                        sparse_feedback_product<T>(source, csr_[hs], arrival);
                    else
                        gemm<T>(T(1), source, false, dense_[hs], false, arrival, false);  // J = source F^T
                }
                break;
        }
        if (routes_[hs]) network.route(h, ws, arrival, j);
        if (spec_.dropout > 0.0) {
            if (masks_[hs].rows() < n || masks_[hs].cols() != j.cols()) masks_[hs].resize(n, j.cols());
            mask_rows_ = n;
            auto mask = masks_[hs].topRows(n);
            const T keep_value = spec_.dropout_inverted ? static_cast<T>(1.0 / (1.0 - spec_.dropout)) : T(1);
            for (Index r = 0; r < n; ++r)
                for (Index c = 0; c < j.cols(); ++c)
                    mask(r, c) = streams_.dropout.uniform() < spec_.dropout ? T(0) : keep_value;
            j.array() *= mask.array();
        }
        if (spec_.quantize == Quantize::Signal) spec_.quantizer.apply(j, streams_.quantize);
        auto b = ws.signal[hs].topRows(n);
        if (spec_.derivative[hs])
            b.array() = ws.derivative[hs].topRows(n).array() * j.array();
        else
            b = j;
        if (!spec_.transform_update) {
            if (spec_.transform == Transform::Sign)
                b = b.array().sign().matrix();
            else if (spec_.transform == Transform::Magnitude)
                b = b.array().abs().matrix();
        }
    }
}

template <class T>
void Channel<T>::adapt(const Workspace<T>& ws, Index n, double lr) {
    if (!adaptive()) return;
    const Index hidden = num_feedback();
    const auto error = ws.signal[static_cast<std::size_t>(hidden)].topRows(n);
    const T scale = static_cast<T>(spec_.feedback_lr_scale * lr / static_cast<double>(n));
    for (Index h = 0; h < hidden; ++h) {
        const auto hs = static_cast<std::size_t>(h);
        const auto source = sources_[hs] == Source::Above ? ws.signal[hs + 1].topRows(n) : error;
        if (kernels_[hs]) {
            // A feedback kernel learns as the forward kernel would from the same signal above: its
            // weight gradient with B^{h+1} and O^h.
            kernels_[hs]->accumulate_update(source, ws.out[hs].topRows(n), scale, kernel_targets_[hs]);
            continue;
        }
        // The activity of the units the signal enters: O^h, or f(S^h) for an injection before the pools.
        const bool before_pools = network_pooled_[hs] && !routes_[hs];
        const auto activity = before_pools ? ws.activity[hs].topRows(n) : ws.out[hs].topRows(n);
        // F += scale A^T source, kept as F^T += scale source^T A
        gemm<T>(scale, source, true, activity, false, transposed_feedback(h), true);
    }
}

template <class T>
Index Channel<T>::channel_macs(const Network<T>& network) const {
    Index total = 0;
    switch (spec_.algorithm) {
        case Algorithm::Top: return 0;
        case Algorithm::BP:
        case Algorithm::SBP:
            for (Index j = 1; j < network.num_layers(); ++j) total += network.layer(j).forward_macs();
            return total;
        default:
            if (spec_.per_synapse) {
                for (const auto& tensor : synapse_)
                    for (const auto& slice : tensor) total += slice.size();
                return total;
            }
            for (Index h = 0; h < num_feedback(); ++h) {
                const auto* kernel = feedback_kernel(h);
                // A kernel entry is used once per output position of the convolution it stands in for.
                const Index uses = kernel ? kernel->output_shape().height * kernel->output_shape().width : 1;
                total += feedback_nonzeros(h) * uses;
            }
            return total;
    }
}

template class Channel<float>;
template class Channel<double>;

}  // namespace rbp
