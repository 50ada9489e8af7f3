// Where the time of one training step of rbp-native goes: microbenchmarks of each phase, run on
// the core library itself (no Python), compiled with the flags of one instruction-set variant.
//
//   rbp_phases_<isa> SIZES BATCH ALGORITHM[:OPTION...] [threads=1] [seconds=0.3] [kernels=auto|eigen|unpacked]
//   e.g. rbp_phases_avx512 784-100-100-100-100-10 128 srbp 1
//        rbp_phases_avx512 784-100-100-100-100-10 128 srbp:density=0.01 1
// Channel options after the algorithm, separated by colons: density=P (sparse feedback, each entry
// kept with probability P), storage=auto|dense|sparse (the feedback's storage) and quantize=BITS
// (error signals quantised to BITS bits, nearest rounding).
// `kernels` picks the products' kernels (rbp::set_unpacked_gemm): the default selection, Eigen's only,
// or the unpacked ones wherever one exists.
//
// Phases, each timed alone in a loop over the same batch (so: warm caches):
//   step     Trainer::step on one batch (targets gathered, forward, loss, channel, update)
//   forward  Network::forward with the derivatives f'(S^h)
//   channel  Channel::compute: the hidden signals B^h from e = T - O
//   update   every layer's accumulate_update (W^h += s B^hT O^{h-1}, b^h += s sum B^h)
//   epoch    Trainer::train_epoch over 50 batches, per batch (adds shuffling and row gathering)
// The step minus the three phases is the rest (targets, loss and accuracy, bookkeeping).
// Prints one JSON line with the median microseconds per batch of each phase, and the channel's
// multiply-accumulates per example (Channel::channel_macs), against which its time should scale.
#include "channel_input.hpp"
#include "rbp/gemm.hpp"
#include "rbp/parallel.hpp"
#include "rbp/trainer.hpp"
#include "timing.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

using namespace rbp;
using Clock = std::chrono::steady_clock;

namespace {

// Median over chunks of calls of the time per call, in microseconds, for at least `seconds`.
double time_us(const std::function<void()>& call, double seconds) {
    for (int i = 0; i < 3; ++i) call();  // warm-up
    int chunk = 1;
    for (;;) {  // size a chunk to ~2 ms
        const auto t0 = Clock::now();
        for (int i = 0; i < chunk; ++i) call();
        const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
        if (dt > 2e-3 || chunk >= (1 << 20)) break;
        chunk *= 2;
    }
    std::vector<double> per_call;
    const auto start = Clock::now();
    while (per_call.size() < 5 || std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
        const auto t0 = Clock::now();
        for (int i = 0; i < chunk; ++i) call();
        per_call.push_back(std::chrono::duration<double>(Clock::now() - t0).count() * 1e6 / chunk);
    }
    return rbp_bench::median(per_call);
}

std::vector<Index> parse_sizes(const std::string& text) {
    std::vector<Index> sizes;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, '-')) sizes.push_back(std::stol(item));
    return sizes;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(
            stderr,
            "usage: %s SIZES BATCH ALGORITHM[:density=P][:storage=S][:quantize=BITS] [threads=1] [seconds=0.3] "
            "[kernels=auto|eigen|unpacked]\n",
            argv[0]);
        return 2;
    }
    const std::vector<Index> sizes = parse_sizes(argv[1]);
    const Index batch = std::atol(argv[2]);
    const std::string algorithm = argv[3];  // with its channel options, as given
    const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
    const double seconds = argc > 5 ? std::atof(argv[5]) : 0.3;
    const std::string kernels = argc > 6 ? argv[6] : "auto";
    if (kernels == "eigen")
        set_unpacked_gemm(UnpackedGemm::Never);
    else if (kernels == "unpacked")
        set_unpacked_gemm(UnpackedGemm::Always);
    else if (kernels != "auto") {
        std::fprintf(stderr, "kernels must be auto, eigen or unpacked, got '%s'\n", kernels.c_str());
        return 2;
    }
    const Index inputs = sizes.front(), classes = sizes.back();
    const Index examples = batch * 50;

    NetworkSpec net_spec;
    net_spec.sizes = sizes;
    auto net = std::make_shared<Network<float>>(net_spec);
    TrainerSpec spec;
    std::istringstream parts(algorithm);
    std::string part;
    std::getline(parts, part, ':');
    spec.channel.algorithm = parse_algorithm(part);
    while (std::getline(parts, part, ':')) {
        const auto eq = part.find('=');
        const std::string key = part.substr(0, eq), value = eq == std::string::npos ? "" : part.substr(eq + 1);
        if (key == "density") {
            spec.channel.feedback.density = std::atof(value.c_str());
        } else if (key == "storage") {
            spec.channel.feedback.storage = parse_storage(value);
        } else if (key == "quantize") {
            spec.channel.quantize = Quantize::Signal;
            spec.channel.quantizer.bits = std::atoi(value.c_str());
        } else {
            std::fprintf(stderr, "unknown channel option '%s' (expected density=P, storage=S or quantize=BITS)\n",
                         part.c_str());
            return 2;
        }
    }
    spec.lr = 1e-4;  // small: the weights barely move over thousands of timed steps
    spec.decay = 0.0;
    spec.batch_size = batch;
    spec.threads = threads;
    Trainer<float> trainer(net, spec);

    Rng rng(1);
    Matrix<float> x(examples, inputs);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform());
    std::vector<std::int64_t> labels(static_cast<std::size_t>(examples));
    for (auto& l : labels) l = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(classes)));
    const auto all_targets = Targets<float>::labels(labels.data(), examples, classes);
    const auto batch_targets = Targets<float>::labels(labels.data(), batch, classes);
    const ConstMatrixRef<float> xb = x.topRows(batch);

    const double step = time_us([&] { trainer.step(xb, batch_targets); }, seconds);
    const double epoch =
        time_us([&] { trainer.train_epoch(x, all_targets); }, seconds) / static_cast<double>(examples / batch);

    // The phases, on a workspace of their own, with the trainer's thread budget (outside a budget the
    // products would take every core, whatever `threads` says).
    Eigen::setNbThreads(threads);
    const ThreadBudget budget(threads);
    rbp_bench::StepWorkspace ws = rbp_bench::workspace_before_channel(*net, sizes, xb, batch_targets, batch);
    const double forward = time_us([&] { net->forward(xb, ws.forward, ws.training, true); }, seconds);
    const double channel = time_us([&] { trainer.channel().compute(*net, ws.training, batch); }, seconds);
    const float scale = 1e-9f;
    const double update = time_us(
        [&] {
            for (Index h = 0; h < net->num_layers(); ++h) {
                Layer<float>& layer = net->layer(h);
                std::vector<Matrix<float>*> params = layer.parameters();
                const auto hs = static_cast<std::size_t>(h);
                if (h == 0)
                    layer.accumulate_update(ws.training.signal[hs].topRows(batch), xb, scale, params);
                else
                    layer.accumulate_update(ws.training.signal[hs].topRows(batch),
                                            ws.forward.out[hs - 1].topRows(batch), scale, params);
            }
        },
        seconds);

    std::printf(
        "{\"sizes\": \"%s\", \"batch\": %ld, \"algorithm\": \"%s\", \"threads\": %d, \"kernels\": \"%s\", "
        "\"simd\": \"%s\", "
        "\"us_per_batch\": {\"step\": %.3f, \"forward\": %.3f, \"channel\": %.3f, \"update\": %.3f, "
        "\"rest\": %.3f, \"epoch\": %.3f}, \"channel_macs_per_example\": %ld}\n",
        argv[1], static_cast<long>(batch), algorithm.c_str(), threads, kernels.c_str(),
        Eigen::SimdInstructionSetsInUse(), step, forward, channel, update,
        std::max(0.0, step - forward - channel - update), epoch,
        static_cast<long>(trainer.channel().channel_macs(*net)));
    return 0;
}
