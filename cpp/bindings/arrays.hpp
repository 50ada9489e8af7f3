// Validation of numpy arguments before they reach the core: shapes, dtypes, contiguity and
// finiteness are checked here and the core receives Eigen views over numpy memory (no copies).
// The value scans (finiteness, label range) read every element; `check_values = false` skips them
// for arrays the Python layer has already checked (rbp_native.Trainer passes checked=True), so that
// fit scans its data once, not once per epoch.
#pragma once

#include "rbp/trainer.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

namespace rbp::bindings {

namespace py = pybind11;

template <class T>
using ConstMap = Eigen::Map<const Matrix<T>>;

inline std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

template <class T>
const char* scalar_name() {
    return sizeof(T) == 4 ? "float32" : "float64";
}

// A read-only view of a C-contiguous 2-D array of dtype T with `cols` columns (any when < 0).
template <class T>
ConstMap<T> matrix_view(const py::array& a, const std::string& what, Index cols = -1, bool check_finite = true) {
    if (!a.dtype().is(py::dtype::of<T>()))
        throw py::type_error(what + " must have dtype " + scalar_name<T>() + ", got " + dtype_name(a));
    if (a.ndim() != 2)
        throw std::invalid_argument(what + " must be 2-dimensional, got " + std::to_string(a.ndim()) + " dimension(s)");
    if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument(what + " must be C-contiguous (use numpy.ascontiguousarray)");
    const Index rows = static_cast<Index>(a.shape(0));
    const Index actual = static_cast<Index>(a.shape(1));
    if (cols >= 0 && actual != cols)
        throw std::invalid_argument(what + " must have " + std::to_string(cols) + " columns, got " +
                                    std::to_string(actual));
    ConstMap<T> view(static_cast<const T*>(a.data()), rows, actual);
    if (check_finite && !all_finite(view.data(), view.size()))
        throw std::invalid_argument(what + " contains NaN or infinity");
    return view;
}

// Labels (int64, 1-D) or dense targets (dtype T, 2-D) for `rows` examples and `outputs` outputs.
template <class T>
Targets<T> targets_view(const py::array& y, Index rows, Index outputs, bool check_values = true) {
    if (y.ndim() == 1) {
        if (!y.dtype().is(py::dtype::of<std::int64_t>()))
            throw py::type_error("labels must have dtype int64, got " + dtype_name(y));
        if (!(y.flags() & py::array::c_style)) throw std::invalid_argument("labels must be contiguous");
        if (static_cast<Index>(y.shape(0)) != rows)
            throw std::invalid_argument("got " + std::to_string(y.shape(0)) + " labels for " + std::to_string(rows) +
                                        " examples");
        const auto* data = static_cast<const std::int64_t*>(y.data());
        const std::int64_t classes = outputs == 1 ? 2 : outputs;
        for (Index i = 0; i < (check_values ? rows : 0); ++i)
            if (data[i] < 0 || data[i] >= classes)
                throw std::invalid_argument("label " + std::to_string(data[i]) + " at position " + std::to_string(i) +
                                            " is outside [0, " + std::to_string(classes) + ")");
        return Targets<T>::labels(data, rows, outputs);
    }
    if (y.ndim() == 2) {
        auto view = matrix_view<T>(y, "targets", outputs, check_values);
        if (view.rows() != rows)
            throw std::invalid_argument("got " + std::to_string(view.rows()) + " target rows for " +
                                        std::to_string(rows) + " examples");
        return Targets<T>::dense(view.data(), rows, outputs);
    }
    throw std::invalid_argument("targets must be 1-D int64 labels or a 2-D array of shape (examples, outputs)");
}

template <class T>
py::array_t<T> to_numpy(const Eigen::Ref<const Matrix<T>, 0, Eigen::OuterStride<>>& m) {
    py::array_t<T> result({m.rows(), m.cols()});
    Eigen::Map<Matrix<T>>(result.mutable_data(), m.rows(), m.cols()) = m;
    return result;
}

}  // namespace rbp::bindings
