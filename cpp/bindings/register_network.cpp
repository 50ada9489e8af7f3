#include "arrays.hpp"
#include "option_names.hpp"

#include "rbp/sparse_layer.hpp"

#include <pybind11/stl.h>

namespace py = pybind11;
using namespace rbp;
using namespace rbp::bindings;

namespace {

// A stage description from the Python layer objects (rbp_native.layers): a dict with "kind"
// ("dense" or "conv2d"), the layer's geometry and "pools", a list of pool dicts.
StageSpec stage_spec(const py::dict& d) {
    StageSpec stage;
    const auto kind = d["kind"].cast<std::string>();
    if (kind == "dense") {
        stage.units = d["units"].cast<Index>();
    } else {
        require(kind == "conv2d", "unknown layer kind '" + kind + "'");
        stage.conv = true;
        stage.filters = d["filters"].cast<Index>();
        stage.kernel_h = d["kernel_h"].cast<Index>();
        stage.kernel_w = d["kernel_w"].cast<Index>();
        stage.stride = d["stride"].cast<Index>();
        stage.padding = parse_padding(d["padding"].cast<std::string>());
    }
    for (const auto& item : d["pools"].cast<py::list>()) {
        const auto p = item.cast<py::dict>();
        PoolSpec pool;
        pool.size_h = p["size_h"].cast<Index>();
        pool.size_w = p["size_w"].cast<Index>();
        pool.stride = p["stride"].cast<Index>();
        pool.padding = parse_padding(p["padding"].cast<std::string>());
        stage.pools.push_back(pool);
    }
    return stage;
}

template <class T>
void bind_network(py::module_& m, const char* name) {
    using Net = Network<T>;
    py::class_<Net, std::shared_ptr<Net>>(m, name)
        .def(py::init([](const std::vector<Index>& sizes, const py::object& activation, const py::object& output,
                         bool bias, const py::object& init, std::uint64_t seed, const std::vector<double>& densities) {
                 NetworkSpec spec;
                 spec.sizes = sizes;
                 spec.activation = parse_activation(option_name(activation));
                 spec.output = parse_output(option_name(output));
                 spec.bias = bias;
                 spec.init = parse_init(option_name(init));
                 spec.seed = seed;
                 spec.densities = densities;
                 return std::make_shared<Net>(spec);
             }),
             py::arg("sizes"), py::arg("activation"), py::arg("output"), py::arg("bias"), py::arg("init"),
             py::arg("seed"), py::arg("densities") = std::vector<double>{})
        .def(py::init([](const std::vector<Index>& input_shape, const py::list& stages, const std::string& activation,
                         const std::string& output, bool bias, const std::string& init, std::uint64_t seed) {
                 require(input_shape.size() == 3, "input_shape must be (channels, height, width)");
                 NetworkSpec spec;
                 spec.input_shape = {input_shape[0], input_shape[1], input_shape[2]};
                 for (const auto& stage : stages) spec.stages.push_back(stage_spec(stage.cast<py::dict>()));
                 spec.activation = parse_activation(activation);
                 spec.output = parse_output(output);
                 spec.bias = bias;
                 spec.init = parse_init(init);
                 spec.seed = seed;
                 return std::make_shared<Net>(spec);
             }),
             py::arg("input_shape"), py::arg("stages"), py::arg("activation"), py::arg("output"), py::arg("bias"),
             py::arg("init"), py::arg("seed"))
        .def_property_readonly("signal_sizes",
                               [](const Net& n) {
                                   std::vector<Index> sizes;
                                   for (Index h = 0; h < n.num_layers(); ++h) sizes.push_back(n.layer(h).output_size());
                                   return sizes;
                               })
        .def_property_readonly("sizes", [](const Net& n) { return n.spec().sizes; })
        .def_property_readonly("activation", [](const Net& n) { return to_string(n.activation()); })
        .def_property_readonly("output", [](const Net& n) { return to_string(n.output()); })
        .def_property_readonly("bias", [](const Net& n) { return n.spec().bias; })
        .def_property_readonly("init", [](const Net& n) { return to_string(n.spec().init); })
        .def_property_readonly("densities", [](const Net& n) { return n.spec().densities; })
        .def_property_readonly("num_layers", &Net::num_layers)
        .def_property_readonly("parameter_count", &Net::parameter_count)
        .def_property_readonly("forward_macs", &Net::forward_macs)
        .def("initialise", &Net::initialise, py::arg("seed"))
        .def("get_weight",
             [](Net& n, Index h) {
                 require(h >= 0 && h < n.num_layers(), "layer index out of range");
                 // A convolution's weight is its kernel, (filters, channels * kh * kw).
                 if (const auto* conv = dynamic_cast<const ConvLayer<T>*>(&n.layer(h)))
                     return to_numpy<T>(conv->kernel());
                 return to_numpy<T>(n.layer(h).dense_weight());
             })
        .def("get_mask",
             [](const Net& n, Index h) -> py::object {
                 require(h >= 0 && h < n.num_layers(), "layer index out of range");
                 const auto* sparse = dynamic_cast<const SparseLayer<T>*>(&n.layer(h));
                 if (!sparse) return py::none();
                 const BoolMatrix mask = sparse->mask();
                 py::array_t<bool> result({mask.rows(), mask.cols()});
                 Eigen::Map<BoolMatrix>(result.mutable_data(), mask.rows(), mask.cols()) = mask;
                 return std::move(result);
             })
        .def("get_bias",
             [](Net& n, Index h) -> py::object {
                 require(h >= 0 && h < n.num_layers(), "layer index out of range");
                 auto params = n.layer(h).parameters();
                 if (params.size() < 2) return py::none();
                 return to_numpy<T>(*params[1]).attr("reshape")(-1);
             })
        .def("set_weight",
             [](Net& n, Index h, const py::array& value) {
                 require(h >= 0 && h < n.num_layers(), "layer index out of range");
                 Layer<T>& layer = n.layer(h);
                 const std::string what = "weights[" + std::to_string(h) + "]";
                 if (auto* conv = dynamic_cast<ConvLayer<T>*>(&layer)) {
                     conv->set_kernel(matrix_view<T>(value, what, conv->kernel().cols()));
                     return;
                 }
                 auto view = matrix_view<T>(value, what, layer.input_size());
                 require(view.rows() == layer.output_size(), what + " must have shape (" +
                                                                 std::to_string(layer.output_size()) + ", " +
                                                                 std::to_string(layer.input_size()) + ")");
                 try {
                     layer.set_dense_weight(view);
                 } catch (const std::invalid_argument& error) {
                     throw std::invalid_argument(what + ": " + error.what());
                 }
             })
        .def("set_bias",
             [](Net& n, Index h, const py::array& value) {
                 require(h >= 0 && h < n.num_layers(), "layer index out of range");
                 auto params = n.layer(h).parameters();
                 require(params.size() == 2, "this network has no biases");
                 Matrix<T>& b = *params[1];
                 const std::string what = "biases[" + std::to_string(h) + "]";
                 require(value.ndim() == 1 && value.shape(0) == b.cols(),
                         what + " must have shape (" + std::to_string(b.cols()) + ",)");
                 b = matrix_view<T>(value.attr("reshape")(1, -1).cast<py::array>(), what, b.cols());
             })
        .def(
            "forward",
            [](const Net& n, const py::array& x) {
                auto view = matrix_view<T>(x, "x", n.input_size());
                py::array_t<T> result({view.rows(), n.output_size()});
                Eigen::Map<Matrix<T>> out(result.mutable_data(), view.rows(), n.output_size());
                {
                    py::gil_scoped_release release;
                    n.predict(view, out);
                }
                return result;
            },
            py::arg("x"));
}

}  // namespace

void register_network(py::module_& m) {
    bind_network<float>(m, "Network32");
    bind_network<double>(m, "Network64");
}
