#include "onednn_plugin.hpp"

#include <stdexcept>
#include <string>

#ifdef RBP_ONEDNN_PLUGIN_FILE
#include <dlfcn.h>
#endif

namespace rbp {

#ifdef RBP_ONEDNN_PLUGIN_FILE

namespace {

// The plugin sits beside the shared object that holds this code (rbp_native/; for a program linking the
// core, beside the program).
std::string plugin_path() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&onednn_plugin), &info) != 0 && info.dli_fname != nullptr) {
        const std::string self = info.dli_fname;
        const auto slash = self.rfind('/');
        if (slash != std::string::npos) return self.substr(0, slash + 1) + RBP_ONEDNN_PLUGIN_FILE;
    }
    return RBP_ONEDNN_PLUGIN_FILE;
}

struct Opened {
    const RbpOneDnnPlugin* table = nullptr;
    std::string error;
};

Opened open_plugin() {
    Opened opened;
    const std::string path = plugin_path();
    // Never closed: its primitives and thread-local state live until the process ends.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* reason = dlerror();
        opened.error = "rbp-native could not open its oneDNN plugin " + path + ": " + (reason ? reason : "unknown") +
                       ". oneDNN's runtime is part of the install on Linux x86-64: pip install "
                       "onednn-cpu-gomp==2023.2.0. Without it, run the convolutions and the bf16 products on the "
                       "portable path: rbp_native._core._set_conv_implementation('eigen') and "
                       "_set_bf16_implementation('portable')";
        return opened;
    }
    using Entry = const RbpOneDnnPlugin* (*)(int);
    const auto entry = reinterpret_cast<Entry>(dlsym(handle, "rbp_onednn_plugin"));
    opened.table = entry != nullptr ? entry(RBP_ONEDNN_PLUGIN_VERSION) : nullptr;
    if (opened.table == nullptr)
        opened.error = "rbp-native's oneDNN plugin " + path + " is not the one of this build (reinstall rbp-native)";
    return opened;
}

}  // namespace

bool onednn_built() { return true; }

const RbpOneDnnPlugin& onednn_plugin() {
    // Once, thread-safe (C++11 statics); never destroyed, so that a layer freed at exit still finds it.
    static const Opened* const opened = new Opened(open_plugin());
    if (opened->table == nullptr) throw std::runtime_error(opened->error);
    return *opened->table;
}

void check_onednn(int status) {
    if (status != 0) throw std::runtime_error(onednn_plugin().last_error());
}

#else  // no oneDNN: the callers check onednn_built() first

bool onednn_built() { return false; }

const RbpOneDnnPlugin& onednn_plugin() { throw std::logic_error("rbp-native was built without oneDNN"); }

void check_onednn(int) {}

#endif

}  // namespace rbp
