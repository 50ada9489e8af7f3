#include "arrays.hpp"

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <exception>

namespace py = pybind11;
using namespace rbp;
using namespace rbp::bindings;

namespace {

py::dict metrics_dict(const Metrics& m) {
    py::dict d;
    d["loss"] = m.loss;
    d["accuracy"] = m.accuracy;
    d["examples"] = m.examples;
    return d;
}

template <class T>
void bind_trainer(py::module_& m, const char* name) {
    using Net = Network<T>;
    using Tr = Trainer<T>;
    py::class_<Tr>(m, name)
        .def(py::init([](std::shared_ptr<Net> network, const std::string& algorithm, const std::vector<bool>& derivative,
                         const std::string& feedback_scale, double lr, double decay, double momentum, Index batch_size,
                         std::uint64_t seed, int threads) {
                 TrainerSpec spec;
                 spec.channel.algorithm = parse_algorithm(algorithm);
                 spec.channel.derivative = derivative;
                 spec.channel.feedback_scale = parse_feedback_scale(feedback_scale);
                 spec.lr = lr;
                 spec.decay = decay;
                 spec.momentum = momentum;
                 spec.batch_size = batch_size;
                 spec.seed = seed;
                 spec.threads = threads;
                 return std::make_unique<Tr>(std::move(network), spec);
             }),
             py::arg("network"), py::arg("algorithm"), py::arg("derivative"), py::arg("feedback_scale"), py::arg("lr"),
             py::arg("decay"), py::arg("momentum"), py::arg("batch_size"), py::arg("seed"), py::arg("threads"),
             py::keep_alive<1, 2>())
        .def_property_readonly("algorithm", [](const Tr& t) { return to_string(t.channel().algorithm()); })
        .def_property_readonly("derivative", [](const Tr& t) { return t.channel().spec().derivative; })
        .def_property_readonly("feedback_scale", [](const Tr& t) { return to_string(t.channel().spec().feedback_scale); })
        .def_property_readonly("updates", &Tr::updates)
        .def_property_readonly("learning_rate", &Tr::learning_rate)
        .def_property_readonly("threads", &Tr::threads)
        .def_property_readonly("channel_macs", [](const Tr& t) { return t.channel().channel_macs(); })
        .def_property_readonly("num_feedback", [](const Tr& t) { return t.channel().num_feedback(); })
        .def("get_feedback", [](const Tr& t, Index h) {
            require(h >= 0 && h < t.channel().num_feedback(), "feedback index out of range");
            return to_numpy<T>(t.channel().feedback(h));
        })
        .def("set_feedback", [](Tr& t, Index h, const py::array& value) {
            require(h >= 0 && h < t.channel().num_feedback(), "feedback index out of range");
            auto f = t.channel().feedback(h);
            const std::string what = "feedback[" + std::to_string(h) + "]";
            auto view = matrix_view<T>(value, what, f.cols());
            require(view.rows() == f.rows(), what + " must have shape (" + std::to_string(f.rows()) + ", " +
                                                 std::to_string(f.cols()) + ")");
            f = view;
        })
        .def("step", [](Tr& t, const py::array& x, const py::array& y) {
            auto xv = matrix_view<T>(x, "x", t.network().input_size());
            auto targets = targets_view<T>(y, xv.rows(), t.network().output_size());
            py::gil_scoped_release release;
            return t.step(xv, targets);
        })
        .def("signals", [](Tr& t, const py::array& x, const py::array& y) {
            auto xv = matrix_view<T>(x, "x", t.network().input_size());
            auto targets = targets_view<T>(y, xv.rows(), t.network().output_size());
            std::vector<Matrix<T>> signals;
            {
                py::gil_scoped_release release;
                signals = t.signals(xv, targets);
            }
            py::list result;
            for (const auto& s : signals) result.append(to_numpy<T>(s));
            return result;
        })
        .def("evaluate", [](const Tr& t, const py::array& x, const py::array& y) {
            auto xv = matrix_view<T>(x, "x", t.network().input_size());
            auto targets = targets_view<T>(y, xv.rows(), t.network().output_size());
            Metrics result;
            {
                py::gil_scoped_release release;
                result = t.evaluate(xv, targets);
            }
            return metrics_dict(result);
        })
        .def("train_epoch", [](Tr& t, const py::array& x, const py::array& y, const py::object& callback, Index every) {
            auto xv = matrix_view<T>(x, "x", t.network().input_size());
            auto targets = targets_view<T>(y, xv.rows(), t.network().output_size());
            // A Python exception raised by the callback (KeyboardInterrupt included) stops the epoch
            // and is re-raised once the GIL is held again.
            std::exception_ptr failure;
            Progress progress;
            if (!callback.is_none()) {
                progress = [&](Index done, Index total, double loss) {
                    py::gil_scoped_acquire acquire;
                    try {
                        return callback(done, total, loss).template cast<bool>();
                    } catch (...) {
                        failure = std::current_exception();
                        return false;
                    }
                };
            }
            bool completed = true;
            Metrics result;
            {
                py::gil_scoped_release release;
                result = t.train_epoch(xv, targets, progress, every, &completed);
            }
            if (failure) std::rethrow_exception(failure);
            py::dict d = metrics_dict(result);
            d["completed"] = completed;
            return d;
        }, py::arg("x"), py::arg("y"), py::arg("callback") = py::none(), py::arg("every") = 10);
}

}  // namespace

void register_trainer(py::module_& m) {
    bind_trainer<float>(m, "Trainer32");
    bind_trainer<double>(m, "Trainer64");
}
