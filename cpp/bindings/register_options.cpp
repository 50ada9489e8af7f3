#include "rbp/options.hpp"

#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_options(py::module_& m) {
    m.def(
        "choices",
        [] {
            py::dict result;
            for (const auto& [option, names] : rbp::option_choices()) {
                py::tuple tuple(names.size());
                for (std::size_t i = 0; i < names.size(); ++i) tuple[i] = py::str(names[i]);
                result[py::str(option)] = tuple;
            }
            return result;
        },
        "Every named option of MLP and Trainer (keyword -> tuple of the names it accepts).");
}
