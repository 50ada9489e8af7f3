// rbp_native._core: the compiled core. Users import rbp_native, which wraps these classes.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_network(py::module_& m);
void register_trainer(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "Native core of rbp-native (use the rbp_native package, not this module).";
    register_network(m);
    register_trainer(m);
}
