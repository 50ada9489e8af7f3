// Shared by the benchmark programs that time the learning channel on its own (phases.cpp,
// sparse_feedback.cpp): a workspace in the state Trainer::step leaves it in before the channel runs.
#pragma once

#include "rbp/trainer.hpp"

#include <vector>

namespace rbp_bench {

// The forward pass of the first `batch` rows of x (derivatives included) and the output error
// e = T - O of their targets, in a workspace sized for `batch`.
inline rbp::Workspace<float> workspace_before_channel(const rbp::Network<float>& net,
                                                      const std::vector<rbp::Index>& /*sizes*/,
                                                      const rbp::ConstMatrixRef<float>& x,
                                                      const rbp::Targets<float>& targets, rbp::Index batch) {
    rbp::Workspace<float> ws;
    net.reserve(ws, batch, true);
    const auto top = static_cast<std::size_t>(net.num_layers() - 1);
    net.forward(x.topRows(batch), ws, true);
    targets.gather(nullptr, batch, ws.targets);
    ws.signal[top].topRows(batch) = ws.targets.topRows(batch) - ws.out[top].topRows(batch);
    return ws;
}

}  // namespace rbp_bench
