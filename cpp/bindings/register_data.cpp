// Data augmentation, exposed with the draws it made so that the tests can replay them in numpy.
#include "arrays.hpp"

#include "rbp/augment.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

namespace py = pybind11;
using namespace rbp;

namespace {

template <class T>
py::tuple augment_copy(const py::array& x, const AugmentSpec& spec, std::uint64_t seed) {
    const auto source = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(x);
    const Index n = static_cast<Index>(x.shape(0)), channels = static_cast<Index>(x.shape(1));
    const Index height = static_cast<Index>(x.shape(2)), width = static_cast<Index>(x.shape(3));
    py::array_t<T> result({x.shape(0), x.shape(1), x.shape(2), x.shape(3)});
    py::array_t<std::int64_t> draws({x.shape(0), py::ssize_t{3}});
    std::vector<AugmentDraw> drawn(static_cast<std::size_t>(n));
    {
        py::gil_scoped_release release;
        if (result.size() > 0) std::memcpy(result.mutable_data(), source.data(), sizeof(T) * result.size());
        Rng rng(derive_seed(seed, "augment"));
        augment_batch<T>(result.mutable_data(), n, channels, height, width, spec, rng, drawn.data());
    }
    auto table = draws.mutable_unchecked<2>();
    for (Index i = 0; i < n; ++i) {
        table(i, 0) = drawn[i].dx;
        table(i, 1) = drawn[i].dy;
        table(i, 2) = drawn[i].flipped ? 1 : 0;
    }
    return py::make_tuple(result, draws);
}

}  // namespace

void register_data(py::module_& m) {
    m.def(
        "all_finite",
        [](const py::array& a) {
            if (!(a.flags() & py::array::c_style)) throw std::invalid_argument("the array must be C-contiguous");
            const auto n = static_cast<Index>(a.size());
            if (a.dtype().is(py::dtype::of<float>())) {
                const py::gil_scoped_release release;
                return all_finite(static_cast<const float*>(a.data()), n);
            }
            if (a.dtype().is(py::dtype::of<double>())) {
                const py::gil_scoped_release release;
                return all_finite(static_cast<const double*>(a.data()), n);
            }
            throw py::type_error("the array must have dtype float32 or float64, got " + bindings::dtype_name(a));
        },
        py::arg("a"), "Whether every value of the C-contiguous float32 or float64 array `a` is finite.");
    m.def(
        "augment",
        [](const py::array& x, double translate, bool flip, std::uint64_t seed) {
            const AugmentSpec spec{translate, flip};
            validate(spec);
            if (x.ndim() != 4)
                throw std::invalid_argument(
                    "x must be a 4-dimensional (examples, channels, height, width) batch, got " +
                    std::to_string(x.ndim()) + " dimension(s)");
            if (x.dtype().is(py::dtype::of<float>())) return augment_copy<float>(x, spec, seed);
            if (x.dtype().is(py::dtype::of<double>())) return augment_copy<double>(x, spec, seed);
            throw py::type_error("x must have dtype float32 or float64, got " + bindings::dtype_name(x));
        },
        py::arg("x"), py::arg("translate"), py::arg("flip"), py::arg("seed"),
        "An augmented copy of the (n, channels, height, width) batch x and the (n, 3) int64 draws (dx, dy, "
        "flipped) per example, from the stream derive_seed(seed, \"augment\"). See rbp/augment.hpp for the draws.");
    m.def(
        "augment_max_shift",
        [](double translate, Index extent) {
            validate(AugmentSpec{translate, false});
            if (extent < 0) throw std::invalid_argument("extent must be non-negative");
            return max_shift(translate, extent);
        },
        py::arg("translate"), py::arg("extent"), "The largest shift in pixels along an axis of `extent` pixels.");
}
