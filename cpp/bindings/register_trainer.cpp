#include "arrays.hpp"
#include "option_names.hpp"

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <chrono>
#include <exception>
#include <optional>

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

// Polls Python's signal handlers at most every 50 ms from a call that released the GIL, so that
// Ctrl-C (KeyboardInterrupt) and any handler that raises stop the call within a batch or a chunk;
// the handler's exception is kept in `failure` and re-raised once the call has returned.
Interrupt signal_poll(std::exception_ptr& failure) {
    using Clock = std::chrono::steady_clock;
    auto last = std::make_shared<Clock::time_point>(Clock::now());
    return [&failure, last]() {
        const auto now = Clock::now();
        if (now - *last < std::chrono::milliseconds(50)) return false;
        *last = now;
        py::gil_scoped_acquire acquire;
        if (PyErr_CheckSignals() == 0) return false;
        failure = std::make_exception_ptr(py::error_already_set());
        return true;
    };
}

py::array_t<std::uint64_t> state_array(const Rng::State& state) {
    py::array_t<std::uint64_t> result(static_cast<py::ssize_t>(state.size()));
    std::copy(state.begin(), state.end(), result.mutable_data());
    return result;
}

Rng::State state_from(const py::dict& d, const char* key) {
    const auto a = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>::ensure(d[key]);
    Rng::State state{};
    if (!a || a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != state.size())
        throw std::invalid_argument(std::string("state['") + key + "'] must be " + std::to_string(state.size()) +
                                    " unsigned 64-bit words");
    std::copy(a.data(), a.data() + state.size(), state.begin());
    return state;
}

// The Trainer's keyword arguments (a dict of plain values) as the core's spec. Only conversions
// happen here: resolved_trainer_spec checks the values and the parsers check the names. seed and
// threads are checked too, being the two whose Python values the core's types cannot hold (negative
// seeds; None for all cores where the core says 0).
TrainerSpec trainer_spec(const py::dict& options) {
    TrainerSpec spec;
    ChannelSpec& c = spec.channel;
    FeedbackSpec& f = c.feedback;
    auto optional_number = [](const py::handle& value) {
        return value.is_none() ? std::nullopt : std::optional<double>(value.cast<double>());
    };
    for (const auto& item : options) {
        const auto key = item.first.cast<std::string>();
        const py::handle value = item.second;
        if (key == "algorithm")
            c.algorithm = parse_algorithm(option_name(value));
        else if (key == "derivative")
            c.derivative = value.cast<std::vector<bool>>();
        else if (key == "sources") {
            c.sources.clear();
            if (!value.is_none())
                for (const auto& name : value) c.sources.push_back(parse_source(option_name(name)));
        } else if (key == "feedback_distribution")
            f.distribution = parse_distribution(option_name(value));
        else if (key == "feedback_scale") {
            if (py::isinstance<py::str>(value)) {
                f.scale = parse_feedback_scale(value.cast<std::string>());
            } else {
                f.scale = FeedbackScale::Value;
                f.scale_value = value.cast<double>();
            }
        } else if (key == "feedback_mean")
            f.mean = value.cast<double>();
        else if (key == "feedback_density")
            f.density = value.cast<double>();
        else if (key == "feedback_nonzeros")
            f.nonzeros = optional_number(value);
        else if (key == "feedback_storage")
            f.storage = parse_storage(option_name(value));
        else if (key == "congruent")
            f.congruent = value.cast<bool>();
        else if (key == "resample")
            f.resample = value.is_none() ? Resample::None : parse_resample(option_name(value));
        else if (key == "feedback_lr_scale")
            c.feedback_lr_scale = value.cast<double>();
        else if (key == "per_synapse")
            c.per_synapse = value.cast<bool>();
        else if (key == "signal_transform")
            c.transform = parse_transform(option_name(value));
        else if (key == "transform_target")
            c.transform_update = parse_transform_target(option_name(value)) == TransformTarget::Update;
        else if (key == "channel_dropout")
            c.dropout = value.cast<double>();
        else if (key == "dropout_inverted")
            c.dropout_inverted = value.cast<bool>();
        else if (key == "frozen_layers")
            c.frozen = value.cast<std::vector<Index>>();
        else if (key == "quantize")
            c.quantize = value.is_none() ? Quantize::None : parse_quantize(option_name(value));
        else if (key == "quantize_bits")
            c.quantizer.bits = value.cast<int>();
        else if (key == "quantize_alpha")
            c.quantize_alpha = optional_number(value);
        else if (key == "quantize_rounding")
            c.quantizer.rounding = parse_rounding(option_name(value));
        else if (key == "precision")
            spec.precision = parse_precision(option_name(value));
        else if (key == "injection") {
            c.inject_after_pool = parse_injection(option_name(value)) == Injection::PostPool;
        } else if (key == "lr")
            spec.lr = value.cast<double>();
        else if (key == "decay")
            spec.decay = value.cast<double>();
        else if (key == "momentum")
            spec.momentum = value.cast<double>();
        else if (key == "batch_size")
            spec.batch_size = value.cast<Index>();
        else if (key == "seed") {
            require(!(value < py::int_(0)), "seed must be non-negative, got " + py::repr(value).cast<std::string>());
            spec.seed = value.cast<std::uint64_t>();
        } else if (key == "threads") {
            require(value.is_none() || value > py::int_(0),
                    "threads must be a positive integer or None, got " + py::repr(value).cast<std::string>());
            spec.threads = value.is_none() ? 0 : value.cast<int>();
        } else if (key == "augment") {
            if (!value.is_none()) {
                const auto d = value.cast<py::dict>();
                AugmentSpec a;
                a.translate = d["translate"].cast<double>();
                a.flip = d["flip"].cast<bool>();
                spec.augment = a;
            }
        } else
            throw std::invalid_argument("unknown trainer option '" + key + "'");
    }
    return spec;
}

template <class T>
void bind_trainer(py::module_& m, const char* name) {
    using Net = Network<T>;
    using Tr = Trainer<T>;
    py::class_<Tr>(m, name)
        .def(py::init([](std::shared_ptr<Net> network, const py::dict& options) {
                 return std::make_unique<Tr>(std::move(network), trainer_spec(options));
             }),
             py::arg("network"), py::arg("options"), py::keep_alive<1, 2>())
        .def_property_readonly("algorithm", [](const Tr& t) { return to_string(t.channel().algorithm()); })
        .def_property_readonly("derivative", [](const Tr& t) { return t.channel().spec().derivative; })
        .def_property_readonly("sources",
                               [](const Tr& t) {
                                   std::vector<std::string> names;
                                   for (Index h = 0; h < t.channel().num_feedback(); ++h)
                                       names.push_back(to_string(t.channel().source(h)));
                                   return names;
                               })
        .def_property_readonly("quantize_alpha", [](const Tr& t) { return t.channel().spec().quantizer.alpha; })
        .def_property_readonly("updates", &Tr::updates)
        .def_property_readonly("learning_rate", &Tr::learning_rate)
        .def_property_readonly("threads", &Tr::threads)
        .def_property_readonly("_skipped_input_zeros", &Tr::skipped_input_zeros)
        .def_property_readonly("_sparse_first_layer", &Tr::sparse_first_layer)
        .def_property_readonly("channel_macs", [](const Tr& t) { return t.channel().channel_macs(t.network()); })
        .def_property_readonly("num_feedback", [](const Tr& t) { return t.channel().num_feedback(); })
        .def("get_feedback",
             [](const Tr& t, Index h) {
                 require(h >= 0 && h < t.channel().num_feedback(), "feedback index out of range");
                 return to_numpy<T>(t.channel().feedback(h));
             })
        .def("feedback_sparse", [](const Tr& t, Index h) { return t.channel().feedback_sparse(h); })
        .def("feedback_kernel",
             [](const Tr& t, Index h) {
                 require(h >= 0 && h < t.channel().num_feedback(), "feedback index out of range");
                 return t.channel().feedback_kernel(h) != nullptr;
             })
        .def("has_counterpart",
             [](const Tr& t, Index h) {
                 require(h >= 0 && h < t.channel().num_feedback(), "feedback index out of range");
                 return t.channel().has_counterpart(t.network(), h);
             })
        .def("feedback_nonzeros", [](const Tr& t, Index h) { return t.channel().feedback_nonzeros(h); })
        .def("counterpart",
             [](const Tr& t, Index h) {
                 require(h >= 0 && h < t.channel().num_feedback(), "feedback index out of range");
                 return to_numpy<T>(t.channel().counterpart(t.network(), h));
             })
        .def("set_feedback",
             [](Tr& t, Index h, const py::array& value) {
                 require(h >= 0 && h < t.channel().num_feedback(), "feedback index out of range");
                 const std::string what = "feedback[" + std::to_string(h) + "]";
                 t.channel().set_feedback(h, matrix_view<T>(value, what, t.channel().feedback_cols(h)));
             })
        .def("synapse_feedback",
             [](const Tr& t, Index h) {
                 require(t.channel().spec().per_synapse, "the trainer has no per-synapse feedback");
                 require(h >= 0 && h < t.network().num_layers() - 1, "hidden layer index out of range");
                 const auto& slices = t.channel().synapse_feedback(h);
                 const Index rows = slices.front().rows(), cols = slices.front().cols();
                 const auto depth = static_cast<Index>(slices.size());
                 py::array_t<T> result({rows, cols, depth});
                 auto r = result.template mutable_unchecked<3>();
                 for (Index k = 0; k < depth; ++k)
                     for (Index i = 0; i < rows; ++i)
                         for (Index j = 0; j < cols; ++j) r(i, j, k) = slices[static_cast<std::size_t>(k)](i, j);
                 return py::make_tuple(result, to_numpy<T>(t.channel().synapse_bias_feedback(h)));
             })
        .def("dropout_masks",
             [](const Tr& t) {
                 py::list result;
                 for (const auto& mask : t.channel().dropout_masks()) result.append(to_numpy<T>(mask));
                 return result;
             })
        .def(
            "step",
            [](Tr& t, const py::array& x, const py::array& y, bool checked) {
                auto xv = matrix_view<T>(x, "x", t.network().input_size(), !checked);
                auto targets = targets_view<T>(y, xv.rows(), t.network().output_size(), !checked);
                py::gil_scoped_release release;
                return t.step(xv, targets);
            },
            py::arg("x"), py::arg("y"), py::kw_only(), py::arg("checked") = false)
        .def(
            "signals",
            [](Tr& t, const py::array& x, const py::array& y, bool checked) {
                auto xv = matrix_view<T>(x, "x", t.network().input_size(), !checked);
                auto targets = targets_view<T>(y, xv.rows(), t.network().output_size(), !checked);
                std::vector<Matrix<T>> signals;
                {
                    py::gil_scoped_release release;
                    signals = t.signals(xv, targets);
                }
                py::list result;
                for (const auto& s : signals) result.append(to_numpy<T>(s));
                return result;
            },
            py::arg("x"), py::arg("y"), py::kw_only(), py::arg("checked") = false)
        .def(
            "evaluate",
            [](const Tr& t, const py::array& x, const py::array& y, bool checked) {
                auto xv = matrix_view<T>(x, "x", t.network().input_size(), !checked);
                auto targets = targets_view<T>(y, xv.rows(), t.network().output_size(), !checked);
                std::exception_ptr failure;
                const Interrupt interrupted = signal_poll(failure);
                Metrics result;
                try {
                    py::gil_scoped_release release;
                    result = t.evaluate(xv, targets, 1000, interrupted);
                } catch (const Interrupted&) {
                    std::rethrow_exception(failure);
                }
                return metrics_dict(result);
            },
            py::arg("x"), py::arg("y"), py::kw_only(), py::arg("checked") = false)
        .def(
            "train_epoch",
            [](Tr& t, const py::array& x, const py::array& y, const py::object& callback, Index every,
               Index max_batches, bool checked) {
                auto xv = matrix_view<T>(x, "x", t.network().input_size(), !checked);
                auto targets = targets_view<T>(y, xv.rows(), t.network().output_size(), !checked);
                // A Python exception raised by the callback or by a signal handler (KeyboardInterrupt
                // included) stops the epoch after the current batch, leaving it pending, and is re-raised
                // once the GIL is held again.
                std::exception_ptr failure;
                EpochControl control;
                control.progress_every = every;
                control.max_batches = max_batches;
                control.interrupted = signal_poll(failure);
                if (!callback.is_none()) {
                    control.progress = [&](Index done, Index total, double loss) {
                        py::gil_scoped_acquire acquire;
                        try {
                            return callback(done, total, loss).template cast<bool>();
                        } catch (...) {
                            failure = std::current_exception();
                            return false;
                        }
                    };
                }
                EpochResult result;
                {
                    py::gil_scoped_release release;
                    result = t.train_epoch(xv, targets, control);
                }
                if (failure) std::rethrow_exception(failure);
                py::dict d = metrics_dict(result.metrics);
                d["completed"] = result.completed;
                d["diverged"] = result.diverged;
                d["batch"] = result.batch;
                d["batches"] = result.batches;
                return d;
            },
            py::arg("x"), py::arg("y"), py::arg("callback") = py::none(), py::arg("every") = 10,
            py::arg("max_batches") = 0, py::kw_only(), py::arg("checked") = false)
        .def_property_readonly("epoch_pending", &Tr::epoch_pending)
        .def("discard_epoch", &Tr::discard_epoch)
        .def_property_readonly("unrecorded_epoch",
                               [](const Tr& t) -> py::object {
                                   const UnrecordedEpoch& e = t.unrecorded_epoch();
                                   if (!e.present) return py::none();
                                   py::dict d = metrics_dict(e.metrics);
                                   d["updates"] = e.updates;
                                   return d;
                               })
        .def("acknowledge_epoch", &Tr::acknowledge_epoch)
        .def("get_state",
             [](const Tr& t) {
                 TrainerState<T> state;
                 {
                     py::gil_scoped_release release;
                     state = t.state();
                 }
                 py::dict d;
                 d["updates"] = state.updates;
                 d["shuffle_stream"] = state_array(state.shuffle);
                 d["feedback_stream"] = state_array(state.feedback_stream);
                 d["dropout_stream"] = state_array(state.dropout_stream);
                 d["quantize_stream"] = state_array(state.quantize_stream);
                 d["augment_stream"] = state_array(state.augment_stream);
                 py::list velocity;
                 for (const auto& layer : state.velocity) {
                     py::list arrays;
                     for (const auto& v : layer) arrays.append(to_numpy<T>(v));
                     velocity.append(arrays);
                 }
                 d["velocity"] = velocity;
                 py::array_t<std::int64_t> order(static_cast<py::ssize_t>(state.epoch.order.size()));
                 std::copy(state.epoch.order.begin(), state.epoch.order.end(), order.mutable_data());
                 d["epoch_order"] = order;
                 d["epoch_next_batch"] = state.epoch.next_batch;
                 d["epoch_loss"] = state.epoch.loss;
                 d["epoch_correct"] = state.epoch.correct;
                 d["epoch_seen"] = state.epoch.seen;
                 py::object unrecorded = py::none();
                 if (state.unrecorded.present) {
                     py::dict u = metrics_dict(state.unrecorded.metrics);
                     u["updates"] = state.unrecorded.updates;
                     unrecorded = u;
                 }
                 d["unrecorded_epoch"] = unrecorded;
                 return d;
             })
        .def("set_state", [](Tr& t, const py::dict& d) {
            for (const char* key :
                 {"updates", "shuffle_stream", "feedback_stream", "dropout_stream", "quantize_stream", "augment_stream",
                  "velocity", "epoch_order", "epoch_next_batch", "epoch_loss", "epoch_correct", "epoch_seen"})
                if (!d.contains(key)) throw std::invalid_argument(std::string("state is missing '") + key + "'");
            TrainerState<T> state;
            state.updates = d["updates"].cast<std::int64_t>();
            state.shuffle = state_from(d, "shuffle_stream");
            state.feedback_stream = state_from(d, "feedback_stream");
            state.dropout_stream = state_from(d, "dropout_stream");
            state.quantize_stream = state_from(d, "quantize_stream");
            state.augment_stream = state_from(d, "augment_stream");
            for (const auto& layer : d["velocity"].cast<py::list>()) {
                state.velocity.emplace_back();
                for (const auto& v : layer.cast<py::list>()) {
                    const py::array a = py::array::ensure(v);
                    if (!a) throw std::invalid_argument("state['velocity'] must hold arrays");
                    state.velocity.back().push_back(Matrix<T>(matrix_view<T>(a, "velocity")));
                }
            }
            const auto order =
                py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(d["epoch_order"]);
            if (!order || order.ndim() != 1)
                throw std::invalid_argument("state['epoch_order'] must be a 1-D integer array");
            state.epoch.order.assign(order.data(), order.data() + order.shape(0));
            state.epoch.next_batch = d["epoch_next_batch"].cast<Index>();
            state.epoch.loss = d["epoch_loss"].cast<double>();
            state.epoch.correct = d["epoch_correct"].cast<Index>();
            state.epoch.seen = d["epoch_seen"].cast<Index>();
            if (d.contains("unrecorded_epoch") && !d["unrecorded_epoch"].is_none()) {
                const auto u = d["unrecorded_epoch"].cast<py::dict>();
                for (const char* key : {"updates", "loss", "accuracy", "examples"})
                    if (!u.contains(key))
                        throw std::invalid_argument(std::string("state['unrecorded_epoch'] is missing '") + key + "'");
                state.unrecorded.present = true;
                state.unrecorded.updates = u["updates"].cast<std::int64_t>();
                state.unrecorded.metrics.loss = u["loss"].cast<double>();
                state.unrecorded.metrics.accuracy = u["accuracy"].cast<double>();
                state.unrecorded.metrics.examples = u["examples"].cast<Index>();
            }
            py::gil_scoped_release release;
            t.set_state(state);
        });
}

}  // namespace

void register_trainer(py::module_& m) {
    bind_trainer<float>(m, "Trainer32");
    bind_trainer<double>(m, "Trainer64");
}
