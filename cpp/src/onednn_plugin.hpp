// The oneDNN plugin (cpp/onednn/), opened on first use (private to the core).
//
// Only the plugin links oneDNN: importing rbp-native and training MLPs never loads it (12.7 MiB less
// resident after the import; benchmarks/README.md, "What was tried").
#pragma once

#include "../onednn/plugin_api.h"

namespace rbp {

// Whether this build has the plugin (CMake found oneDNN).
bool onednn_built();

// The plugin's table, opened on the first call (thread-safe). Throws std::runtime_error naming the file
// and the reason when it cannot be opened (oneDNN's runtime missing), std::logic_error when this build
// has no plugin (callers check onednn_built() first).
const RbpOneDnnPlugin& onednn_plugin();

// Throws std::runtime_error with the plugin's message when a call of its table failed (status != 0).
void check_onednn(int status);

}  // namespace rbp
