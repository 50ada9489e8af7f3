// The signals of the channel: J^h and B^h of every hidden layer from the output error (bp, sbp, and
// the products with the feedback matrices of channel_feedback.cpp), with routing through pools,
// dropout, quantisation, f' and the transforms; per-synapse srbp's weight updates; the adaptive
// algorithms' feedback updates; and what computing the signals costs.
#include "rbp/channel.hpp"

#include "rbp/gemm.hpp"
#include "rbp/parallel.hpp"

#include "batch_major_sparse.hpp"

#include <algorithm>

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
void Channel<T>::compute(const Network<T>& network, TrainingWorkspace<T>& ws, Index n) {
    const Index hidden = network.num_layers() - 1;
    // Per-synapse srbp has no per-neuron signal: accumulate_synapse_update builds each weight's update.
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
            for_row_blocks(n, j.cols(), [&](Index first, Index end) {
                b.middleRows(first, end - first).array() =
                    ws.derivative[hs].middleRows(first, end - first).array() * j.middleRows(first, end - first).array();
            });
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
void Channel<T>::accumulate_synapse_update(Index hidden, const TrainingWorkspace<T>& ws,
                                           const ConstMatrixRef<T>& presynaptic, Index n, double lr,
                                           std::vector<Matrix<T>*>& targets) {
    const auto hs = static_cast<std::size_t>(hidden);
    const T scale = static_cast<T>(lr / static_cast<double>(n));
    const Index width = ws.signal[hs].cols();
    // Delta W_ij = lr/n sum_b D_bi (e_b . r_ij) O_bj = lr/n sum_k R_k,ij [(D * e_k)^T O]_ij
    const auto e = ws.signal.back().topRows(n);
    const auto& tensor = synapse_[hs];
    // Scratch sized for the largest batch and layer on first use, so that steps allocate nothing.
    auto grow = [](Matrix<T>& m, Index rows, Index cols) {
        if (m.rows() < rows || m.cols() < cols) m.resize(std::max(m.rows(), rows), std::max(m.cols(), cols));
    };
    grow(synapse_weighted_, ws.capacity, width);
    grow(synapse_product_, width, presynaptic.cols());
    auto weighted = synapse_weighted_.topLeftCorner(n, width);
    auto product = synapse_product_.topLeftCorner(width, presynaptic.cols());
    for (Index k = 0; k < e.cols(); ++k) {
        if (derivative(hidden))
            weighted = (ws.derivative[hs].topRows(n).array().colwise() * e.col(k).array()).matrix();
        else
            weighted = e.col(k).replicate(1, width);
        gemm<T>(T(1), weighted, true, presynaptic, false, product, false);
        targets[0]->array() += scale * tensor[static_cast<std::size_t>(k)].array() * product.array();
    }
    if (targets.size() > 1) {
        gemm<T>(T(1), e, false, synapse_bias_[hs], true, weighted, false);
        if (derivative(hidden)) weighted.array() *= ws.derivative[hs].topRows(n).array();
        targets[1]->row(0).noalias() += scale * weighted.colwise().sum();
    }
}

template <class T>
void Channel<T>::adapt(const ForwardWorkspace<T>& forward, const TrainingWorkspace<T>& ws, Index n, double lr) {
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
            kernels_[hs]->accumulate_update(source, forward.out[hs].topRows(n), scale, kernel_targets_[hs]);
            continue;
        }
        // The activity of the units the signal enters: O^h, or f(S^h) for an injection before the pools.
        const bool before_pools = network_pooled_[hs] && !routes_[hs];
        const auto activity = before_pools ? forward.activity[hs].topRows(n) : forward.out[hs].topRows(n);
        // F += scale A^T source, kept as F^T += scale source^T A
        gemm<T>(scale, source, true, activity, false, transposed_feedback(h), true);
    }
}

template <class T>
std::vector<ConstMatrixRef<T>> Channel<T>::dropout_masks() const {
    std::vector<ConstMatrixRef<T>> result;
    for (const auto& mask : masks_) result.emplace_back(mask.topRows(std::min(mask_rows_, mask.rows())));
    return result;
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

// Each source file of the channel instantiates the members it defines (see channel.cpp).
#define RBP_INSTANTIATE_CHANNEL_SIGNAL(T)                                                                             \
    template void Channel<T>::compute(const Network<T>&, TrainingWorkspace<T>&, Index);                               \
    template void Channel<T>::accumulate_synapse_update(Index, const TrainingWorkspace<T>&, const ConstMatrixRef<T>&, \
                                                        Index, double, std::vector<Matrix<T>*>&);                     \
    template void Channel<T>::adapt(const ForwardWorkspace<T>&, const TrainingWorkspace<T>&, Index, double);          \
    template std::vector<ConstMatrixRef<T>> Channel<T>::dropout_masks() const;                                        \
    template Index Channel<T>::channel_macs(const Network<T>&) const;
RBP_INSTANTIATE_CHANNEL_SIGNAL(float)
RBP_INSTANTIATE_CHANNEL_SIGNAL(double)
#undef RBP_INSTANTIATE_CHANNEL_SIGNAL

}  // namespace rbp
