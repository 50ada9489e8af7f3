// The named options of the network and the trainer: each option's enum and, in options.cpp, its one
// table of names. Parsing, the names the bindings report back and the choices the Python package and
// its command line offer (_core.choices()) all come from those tables; docs/channels.md defines
// each option.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace rbp {

// -- the network -------------------------------------------------------------------------------

enum class Activation { Tanh, Logistic, Relu, Linear };
// Each output is paired with its matching loss: softmax + cross-entropy, logistic + binary
// cross-entropy, linear + squared error. For all three, -dLoss/dS^L = T - O.
enum class Output { Softmax, Logistic, Linear };
enum class Init { GlorotNormal, GlorotUniform, HeNormal, LecunNormal };

// -- the learning channel ----------------------------------------------------------------------

enum class Algorithm { BP, SBP, RBP, SRBP, ARBP, ASRBP, Top };
// Where a hidden layer's feedback comes from: the layer above (rbp-style) or the output (srbp-style).
enum class Source { Above, Output };
enum class Distribution { Gaussian, Uniform, Sign, Bernoulli, Ones };
// Scale s of the draw F = mean + s * Z: the Glorot-normal standard deviation of the forward
// counterpart, sqrt(2 / (N_h + N_source)); 1; or a given value (a number, so it has no name).
enum class FeedbackScale { Glorot, Unit, Value };
// None is the absence of the option (Python's None), not a name.
enum class Resample { None, ZeroMean, SignConcordant };
enum class Storage { Auto, Dense, Sparse };
enum class Transform { None, Sign, Magnitude };
// What a signal transform applies to: the hidden signals B^h or the batch updates.
enum class TransformTarget { Signal, Update };
// None is the absence of the option (Python's None), not a name.
enum class Quantize { None, Signal, Update };
enum class Rounding { Nearest, Stochastic };
// Where output-sourced feedback reaches a convolutional stage with max-pooling: at the convolution's
// output S^h (before the pool) or at the pooled output, routed back through the pools (docs/conv.md).
enum class Injection { PrePool, PostPool };
// The arithmetic of the dense products of training (gemm.hpp's Bf16Products): float32, or operands
// rounded to bfloat16 with float32 sums.
enum class Precision { Float32, Bf16 };

// -- layers ------------------------------------------------------------------------------------

// A sliding window's padding (convolution and pooling; cpp/include/rbp/conv.hpp gives the geometry).
enum class Padding { Same, Valid };

// Each parser throws std::invalid_argument naming the option as rbp_native.MLP and Trainer spell
// it and every name it accepts: "unknown algorithm 'backprop'; choose one of bp, sbp, ...".
Activation parse_activation(const std::string& name);
Output parse_output(const std::string& name);
Init parse_init(const std::string& name);
Algorithm parse_algorithm(const std::string& name);
Source parse_source(const std::string& name);
Distribution parse_distribution(const std::string& name);
FeedbackScale parse_feedback_scale(const std::string& name);
Resample parse_resample(const std::string& name);
Storage parse_storage(const std::string& name);
Transform parse_transform(const std::string& name);
TransformTarget parse_transform_target(const std::string& name);
Quantize parse_quantize(const std::string& name);
Rounding parse_rounding(const std::string& name);
Injection parse_injection(const std::string& name);
Precision parse_precision(const std::string& name);
Padding parse_padding(const std::string& name);

std::string to_string(Activation activation);
std::string to_string(Output output);
std::string to_string(Init init);
std::string to_string(Algorithm algorithm);
std::string to_string(Source source);

// Every named option and its names, in table order, keyed by its keyword argument in rbp_native.
std::vector<std::pair<std::string, std::vector<std::string>>> option_choices();

// The algorithms with feedback matrices F^h (rbp, srbp and their adaptive forms).
bool has_feedback(Algorithm algorithm);
// quantize_alpha when none is given: the paper's 2^-3 for error signals, 2^-6 for weight updates
// (section 5).
double default_quantize_alpha(Quantize mode);

}  // namespace rbp
