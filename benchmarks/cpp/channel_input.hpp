// Shared by the benchmark programs that time the learning channel on its own (phases.cpp,
// sparse_feedback.cpp): a workspace in the state Trainer::step leaves it in before the channel runs.
#pragma once

#include "rbp/trainer.hpp"

#include <vector>

namespace rbp_bench {

// The workspaces of a training step: the forward pass's and what training adds (the signals).
struct StepWorkspace {
    rbp::ForwardWorkspace<float> forward;
    rbp::TrainingWorkspace<float> training;
};

// The forward pass of the first `batch` rows of x (derivatives included) and the output error
// e = T - O of their targets, in workspaces sized for `batch`.
inline StepWorkspace workspace_before_channel(const rbp::Network<float>& net, const std::vector<rbp::Index>& /*sizes*/,
                                              const rbp::ConstMatrixRef<float>& x, const rbp::Targets<float>& targets,
                                              rbp::Index batch) {
    StepWorkspace ws;
    net.reserve(ws.forward, batch);
    net.reserve(ws.training, batch);
    const auto top = static_cast<std::size_t>(net.num_layers() - 1);
    net.forward(x.topRows(batch), ws.forward, ws.training, true);
    rbp::Matrix<float> batch_targets(batch, net.output_size());
    targets.gather(nullptr, batch, batch_targets);
    ws.training.signal[top].topRows(batch) = batch_targets - ws.forward.out[top].topRows(batch);
    return ws;
}

}  // namespace rbp_bench
