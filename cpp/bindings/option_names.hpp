// Named options arriving from Python, for the core's parsers (rbp/options.hpp), whose errors name
// the option and every name it accepts.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace rbp::bindings {

namespace py = pybind11;

// The name `value` gives: the string itself, or the repr of anything else (5, None, a list), which
// no table holds, so the parser reports it like any unknown name (a ValueError, not a cast error).
inline std::string option_name(const py::handle& value) {
    if (py::isinstance<py::str>(value)) return value.cast<std::string>();
    return py::repr(value).cast<std::string>();
}

}  // namespace rbp::bindings
