// rbp_native._core: the compiled core. Users import rbp_native, which wraps these classes.
#include <pybind11/pybind11.h>
#include <Eigen/Core>

namespace py = pybind11;

void register_data(py::module_& m);
void register_network(py::module_& m);
void register_options(py::module_& m);
void register_products(py::module_& m);
void register_trainer(py::module_& m);

// The build compiles this module once per instruction set (_core_sse2, _core_avx2, _core_avx512;
// rbp_native/_native.py picks one) or once as _core; the file name and the init symbol must agree.
#ifndef RBP_NATIVE_MODULE
#define RBP_NATIVE_MODULE _core
#endif
#ifndef RBP_NATIVE_ISA
#define RBP_NATIVE_ISA "unknown"
#endif

PYBIND11_MODULE(RBP_NATIVE_MODULE, m) {
    m.doc() = "Native core of rbp-native (use the rbp_native package, not this module).";
    m.attr("isa") = RBP_NATIVE_ISA;  // the instruction set this module was compiled for
    // Once, here: Eigen's own threading stays off (parallel.hpp), and no call writes this global again.
    Eigen::setNbThreads(1);
    register_options(m);
    register_network(m);
    register_trainer(m);
    register_products(m);
    register_data(m);
}
