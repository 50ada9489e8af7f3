// The options of the network and the trainer: one table of names per option, and the one check of
// a trainer's options (resolved_trainer_spec), whose messages name each option as rbp_native.Trainer
// spells it.
#include "rbp/options.hpp"

#include "rbp/trainer.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>
#include <type_traits>

namespace rbp {

namespace {

template <class E>
struct Named {
    const char* name;
    E value;
};

template <class E>
struct OptionTable {
    const char* keyword;  // the option's keyword argument in rbp_native (and its key in choices())
    std::vector<Named<E>> names;
};

const OptionTable<Activation>& activation_table() {
    static const OptionTable<Activation> table{"activation",
                                               {{"tanh", Activation::Tanh},
                                                {"logistic", Activation::Logistic},
                                                {"relu", Activation::Relu},
                                                {"linear", Activation::Linear}}};
    return table;
}

const OptionTable<Output>& output_table() {
    static const OptionTable<Output> table{
        "output", {{"softmax", Output::Softmax}, {"logistic", Output::Logistic}, {"linear", Output::Linear}}};
    return table;
}

const OptionTable<Init>& init_table() {
    static const OptionTable<Init> table{"init",
                                         {{"glorot_normal", Init::GlorotNormal},
                                          {"glorot_uniform", Init::GlorotUniform},
                                          {"he_normal", Init::HeNormal},
                                          {"lecun_normal", Init::LecunNormal}}};
    return table;
}

const OptionTable<Algorithm>& algorithm_table() {
    static const OptionTable<Algorithm> table{"algorithm",
                                              {{"bp", Algorithm::BP},
                                               {"sbp", Algorithm::SBP},
                                               {"rbp", Algorithm::RBP},
                                               {"srbp", Algorithm::SRBP},
                                               {"arbp", Algorithm::ARBP},
                                               {"asrbp", Algorithm::ASRBP},
                                               {"top", Algorithm::Top}}};
    return table;
}

const OptionTable<Source>& source_table() {
    static const OptionTable<Source> table{"sources", {{"above", Source::Above}, {"output", Source::Output}}};
    return table;
}

const OptionTable<Distribution>& distribution_table() {
    static const OptionTable<Distribution> table{"feedback_distribution",
                                                 {{"gaussian", Distribution::Gaussian},
                                                  {"uniform", Distribution::Uniform},
                                                  {"sign", Distribution::Sign},
                                                  {"bernoulli", Distribution::Bernoulli},
                                                  {"ones", Distribution::Ones}}};
    return table;
}

const OptionTable<FeedbackScale>& feedback_scale_table() {
    static const OptionTable<FeedbackScale> table{"feedback_scale",
                                                  {{"glorot", FeedbackScale::Glorot}, {"unit", FeedbackScale::Unit}}};
    return table;
}

const OptionTable<Resample>& resample_table() {
    static const OptionTable<Resample> table{
        "resample", {{"zero_mean", Resample::ZeroMean}, {"sign_concordant", Resample::SignConcordant}}};
    return table;
}

const OptionTable<Storage>& storage_table() {
    static const OptionTable<Storage> table{
        "feedback_storage", {{"auto", Storage::Auto}, {"dense", Storage::Dense}, {"sparse", Storage::Sparse}}};
    return table;
}

const OptionTable<Transform>& transform_table() {
    static const OptionTable<Transform> table{
        "signal_transform",
        {{"none", Transform::None}, {"sign", Transform::Sign}, {"magnitude", Transform::Magnitude}}};
    return table;
}

const OptionTable<TransformTarget>& transform_target_table() {
    static const OptionTable<TransformTarget> table{
        "transform_target", {{"signal", TransformTarget::Signal}, {"update", TransformTarget::Update}}};
    return table;
}

const OptionTable<Quantize>& quantize_table() {
    static const OptionTable<Quantize> table{"quantize", {{"signal", Quantize::Signal}, {"update", Quantize::Update}}};
    return table;
}

const OptionTable<Rounding>& rounding_table() {
    static const OptionTable<Rounding> table{"quantize_rounding",
                                             {{"nearest", Rounding::Nearest}, {"stochastic", Rounding::Stochastic}}};
    return table;
}

const OptionTable<Injection>& injection_table() {
    static const OptionTable<Injection> table{"injection",
                                              {{"pre_pool", Injection::PrePool}, {"post_pool", Injection::PostPool}}};
    return table;
}

const OptionTable<Precision>& precision_table() {
    static const OptionTable<Precision> table{"precision",
                                              {{"float32", Precision::Float32}, {"bf16", Precision::Bf16}}};
    return table;
}

const OptionTable<Padding>& padding_table() {
    static const OptionTable<Padding> table{"padding", {{"same", Padding::Same}, {"valid", Padding::Valid}}};
    return table;
}

template <class E>
std::vector<std::string> names_of(const OptionTable<E>& table) {
    std::vector<std::string> names;
    for (const auto& entry : table.names) names.emplace_back(entry.name);
    return names;
}

std::string joined(const std::vector<std::string>& names) {
    std::string text;
    for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
    return text;
}

template <class E>
E parse(const OptionTable<E>& table, const std::string& name) {
    for (const auto& entry : table.names)
        if (name == entry.name) return entry.value;
    throw std::invalid_argument(std::string("unknown ") + table.keyword + " '" + name + "'; choose one of " +
                                joined(names_of(table)));
}

template <class E>
std::string name_of(const OptionTable<E>& table, E value) {
    for (const auto& entry : table.names)
        if (entry.value == value) return entry.name;
    throw std::logic_error(std::string("a value of ") + table.keyword + " has no name");
}

// A number as Python prints it in messages (shortest round trip: 0.1, -1, nan, inf).
std::string number(double value) {
    if (std::isnan(value)) return "nan";
    if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
    char buffer[32];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    return std::string(buffer, result.ptr);
}

std::string feedback_algorithm_names() {
    std::vector<std::string> names;
    for (const auto& entry : algorithm_table().names)
        if (has_feedback(entry.value)) names.emplace_back(entry.name);
    return joined(names);
}

// The channel options that only the feedback algorithms use, as far as they differ from their defaults.
std::vector<std::string> feedback_options_given(const FeedbackSpec& fb) {
    std::vector<std::string> given;
    if (fb.distribution != Distribution::Gaussian) given.emplace_back("feedback_distribution");
    if (fb.mean != 0.0) given.emplace_back("feedback_mean");
    if (fb.density != 1.0) given.emplace_back("feedback_density");
    if (fb.nonzeros) given.emplace_back("feedback_nonzeros");
    if (fb.congruent) given.emplace_back("congruent");
    if (fb.resample != Resample::None) given.emplace_back("resample");
    if (fb.storage != Storage::Auto) given.emplace_back("feedback_storage");
    return given;
}

}  // namespace

Activation parse_activation(const std::string& name) { return parse(activation_table(), name); }
Output parse_output(const std::string& name) { return parse(output_table(), name); }
Init parse_init(const std::string& name) { return parse(init_table(), name); }
Algorithm parse_algorithm(const std::string& name) { return parse(algorithm_table(), name); }
Source parse_source(const std::string& name) { return parse(source_table(), name); }
Distribution parse_distribution(const std::string& name) { return parse(distribution_table(), name); }
FeedbackScale parse_feedback_scale(const std::string& name) { return parse(feedback_scale_table(), name); }
Resample parse_resample(const std::string& name) { return parse(resample_table(), name); }
Storage parse_storage(const std::string& name) { return parse(storage_table(), name); }
Transform parse_transform(const std::string& name) { return parse(transform_table(), name); }
TransformTarget parse_transform_target(const std::string& name) { return parse(transform_target_table(), name); }
Quantize parse_quantize(const std::string& name) { return parse(quantize_table(), name); }
Rounding parse_rounding(const std::string& name) { return parse(rounding_table(), name); }
Injection parse_injection(const std::string& name) { return parse(injection_table(), name); }
Precision parse_precision(const std::string& name) { return parse(precision_table(), name); }
Padding parse_padding(const std::string& name) { return parse(padding_table(), name); }

std::string to_string(Activation activation) { return name_of(activation_table(), activation); }
std::string to_string(Output output) { return name_of(output_table(), output); }
std::string to_string(Init init) { return name_of(init_table(), init); }
std::string to_string(Algorithm algorithm) { return name_of(algorithm_table(), algorithm); }
std::string to_string(Source source) { return name_of(source_table(), source); }

std::vector<std::pair<std::string, std::vector<std::string>>> option_choices() {
    std::vector<std::pair<std::string, std::vector<std::string>>> choices;
    auto add = [&](const auto& table) { choices.emplace_back(table.keyword, names_of(table)); };
    add(activation_table());
    add(output_table());
    add(init_table());
    add(algorithm_table());
    add(source_table());
    add(distribution_table());
    add(feedback_scale_table());
    add(resample_table());
    add(storage_table());
    add(transform_table());
    add(transform_target_table());
    add(quantize_table());
    add(rounding_table());
    add(injection_table());
    add(precision_table());
    add(padding_table());
    return choices;
}

bool has_feedback(Algorithm algorithm) {
    switch (algorithm) {
        case Algorithm::RBP:
        case Algorithm::SRBP:
        case Algorithm::ARBP:
        case Algorithm::ASRBP: return true;
        default: return false;
    }
}

double default_quantize_alpha(Quantize mode) { return mode == Quantize::Update ? 0.015625 : 0.125; }

template <class T>
TrainerSpec resolved_trainer_spec(TrainerSpec spec, const Network<T>& network) {
    ChannelSpec& c = spec.channel;
    FeedbackSpec& fb = c.feedback;
    const Index layers = network.num_layers();
    const Index hidden = layers - 1;
    const auto hs = static_cast<std::size_t>(hidden);
    const std::string algorithm = to_string(c.algorithm);
    const bool feedback_algorithm = has_feedback(c.algorithm);
    const bool adaptive = c.algorithm == Algorithm::ARBP || c.algorithm == Algorithm::ASRBP;

    if (c.derivative.empty()) c.derivative.assign(hs, true);
    require(c.derivative.size() == hs, "derivative needs one flag per hidden layer (" + std::to_string(hidden) +
                                           "), got " + std::to_string(c.derivative.size()));
    require(c.sources.empty() || feedback_algorithm,
            "sources apply only to " + feedback_algorithm_names() + ", not '" + algorithm + "'");
    require(c.sources.empty() || c.sources.size() == hs, "sources needs one entry per hidden layer (" +
                                                             std::to_string(hidden) + "), got " +
                                                             std::to_string(c.sources.size()));
    if (!feedback_algorithm) {
        const auto given = feedback_options_given(fb);
        require(given.empty(), joined(given) + " apply only to the feedback algorithms (" + feedback_algorithm_names() +
                                   "), not '" + algorithm + "'");
    }
    require(fb.scale != FeedbackScale::Value || (std::isfinite(fb.scale_value) && fb.scale_value > 0),
            "feedback_scale must be 'glorot', 'unit' or a positive number, got " + number(fb.scale_value));
    require(!(fb.density != 1.0 && fb.nonzeros), "give feedback_density or feedback_nonzeros, not both");
    require(fb.density >= 0.0 && fb.density <= 1.0, "feedback_density must lie in [0, 1], got " + number(fb.density));
    require(!fb.nonzeros || (std::isfinite(*fb.nonzeros) && *fb.nonzeros >= 0),
            "feedback_nonzeros must be a non-negative number, got " + number(fb.nonzeros.value_or(0.0)));
    for (const auto& [name, value] : {std::pair<const char*, double>{"lr", spec.lr},
                                      {"decay", spec.decay},
                                      {"momentum", spec.momentum},
                                      {"feedback_mean", fb.mean},
                                      {"feedback_lr_scale", c.feedback_lr_scale},
                                      {"channel_dropout", c.dropout}})
        require(std::isfinite(value), std::string(name) + " must be finite, got " + number(value));
    require(spec.lr > 0, "lr must be positive, got " + number(spec.lr));
    require(spec.decay >= 0, "decay must be non-negative, got " + number(spec.decay));
    require(spec.momentum >= 0 && spec.momentum < 1, "momentum must lie in [0, 1), got " + number(spec.momentum));
    require(c.dropout >= 0 && c.dropout < 1, "channel_dropout must lie in [0, 1), got " + number(c.dropout));
    require(c.feedback_lr_scale >= 0, "feedback_lr_scale must be non-negative, got " + number(c.feedback_lr_scale));
    require(spec.batch_size > 0, "batch_size must be positive, got " + std::to_string(spec.batch_size));
    require(spec.threads >= 0, "threads must be non-negative (0 means all cores), got " + std::to_string(spec.threads));
    require(c.quantizer.bits >= 1 && c.quantizer.bits <= 64,
            "quantize_bits must lie in [1, 64], got " + std::to_string(c.quantizer.bits));
    c.quantizer.alpha = c.quantize_alpha.value_or(default_quantize_alpha(c.quantize));
    require(std::isfinite(c.quantizer.alpha) && c.quantizer.alpha > 0,
            "quantize_alpha must be positive, got " + number(c.quantizer.alpha));
    for (Index layer : c.frozen)
        require(layer >= 1 && layer <= layers, "frozen layer " + std::to_string(layer) + " is outside 1.." +
                                                   std::to_string(layers) + " (paper numbering)");
    if (adaptive) {
        require(fb.storage != Storage::Sparse, "adaptive feedback (arbp, asrbp) needs dense feedback storage");
        require(fb.resample == Resample::None, "adaptive feedback cannot be resampled every batch");
    }
    if (c.per_synapse) {
        require(c.algorithm == Algorithm::SRBP, "per_synapse is defined for srbp only");
        require(c.dropout == 0.0 && c.quantize != Quantize::Signal && c.transform == Transform::None &&
                    fb.resample == Resample::None && fb.density >= 1.0 && !fb.nonzeros && !fb.congruent,
                "per_synapse cannot be combined with dropout, signal quantisation, transforms, resampling, sparsity "
                "or congruence");
        for (Index h = 0; h < layers; ++h)
            require(network.layer(h).kind() == "dense", "per_synapse needs dense layers");
    }
    require(!c.inject_after_pool || (feedback_algorithm && network.has_pools()),
            "injection after the pool applies only to output-sourced feedback (srbp) in a network with max-pooling");
    require(!(c.quantize == Quantize::Update && c.transform_update && c.transform != Transform::None),
            "quantised updates cannot be combined with an update transform");
    require(!(c.quantize == Quantize::Update && c.per_synapse),
            "quantised updates cannot be combined with per_synapse");
    if (spec.precision == Precision::Bf16) {
        require(std::is_same_v<T, float>, "precision='bf16' needs a float32 network, got float64");
        for (Index h = 0; h < layers; ++h) {
            const std::string kind = network.layer(h).kind();
            require(kind == "dense" || kind == "conv2d",
                    "precision='bf16' needs a network of dense and conv2d layers (their products are the bf16 ones), "
                    "got a '" +
                        kind + "' layer");
        }
    }
    return spec;
}

template TrainerSpec resolved_trainer_spec<float>(TrainerSpec, const Network<float>&);
template TrainerSpec resolved_trainer_spec<double>(TrainerSpec, const Network<double>&);

}  // namespace rbp
