// The learning channel with sparse feedback stored sparse (CSR) against the same matrices stored
// dense, over a range of densities: whether sparse feedback costs in proportion to its non-zeros,
// and where feedback_storage="auto" should switch (cpp/src/channel_feedback.cpp).
//
//   rbp_sparse_feedback_<isa> SIZES BATCH ALGORITHM [seconds per density=0.5] [densities=...]
//   e.g. rbp_sparse_feedback_avx512 784-100-100-100-100-10 128 rbp
//        rbp_sparse_feedback_avx512 784-1000-1000-1000-10 128 rbp 1 0.01,0.1
//
// One thread. For each density both channels (same seed, so the same feedback values) compute the
// hidden signals of one batch (Channel::compute, as the `channel` phase of phases.cpp), timed
// alternately in chunks of calls so that both see the same machine state. Prints one JSON line per
// density: the median microseconds per batch of each storage, the median of the per-chunk ratios
// (dense / sparse: >1 means CSR is faster), the channel's multiply-adds per example, and the storage
// "auto" picks for each hidden layer.
#include "channel_input.hpp"
#include "rbp/trainer.hpp"
#include "timing.hpp"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

using namespace rbp;

namespace {

std::vector<double> parse_list(const std::string& text, char sep) {
    std::vector<double> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, sep)) out.push_back(std::stod(item));
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s SIZES BATCH ALGORITHM [seconds=0.5] [densities=0.001,0.01,...]\n", argv[0]);
        return 2;
    }
    std::vector<Index> sizes;
    for (double s : parse_list(argv[1], '-')) sizes.push_back(static_cast<Index>(s));
    const Index batch = std::atol(argv[2]);
    const Algorithm algorithm = parse_algorithm(argv[3]);
    const double seconds = argc > 4 ? std::atof(argv[4]) : 0.5;
    const std::vector<double> densities =
        parse_list(argc > 5 ? argv[5] : "0.001,0.003,0.01,0.03,0.1,0.2,0.3,0.5,1", ',');

    NetworkSpec net_spec;
    net_spec.sizes = sizes;
    auto net = std::make_shared<Network<float>>(net_spec);
    Rng rng(1);
    Matrix<float> x(batch, sizes.front());
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform());
    std::vector<std::int64_t> labels(static_cast<std::size_t>(batch));
    for (auto& l : labels) l = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(sizes.back())));
    const auto targets = Targets<float>::labels(labels.data(), batch, sizes.back());

    Eigen::setNbThreads(1);
    rbp_bench::StepWorkspace ws = rbp_bench::workspace_before_channel(*net, sizes, x, targets, batch);

    for (double density : densities) {
        auto trainer_with = [&](Storage storage) {
            TrainerSpec spec;
            spec.channel.algorithm = algorithm;
            spec.channel.feedback.density = density;
            spec.channel.feedback.storage = storage;
            spec.batch_size = batch;
            spec.threads = 1;
            return Trainer<float>(net, spec);
        };
        Trainer<float> sparse = trainer_with(Storage::Sparse), dense = trainer_with(Storage::Dense),
                       automatic = trainer_with(Storage::Auto);
        auto compute_with = [&](Trainer<float>& trainer) {
            return [&](int calls) {
                for (int i = 0; i < calls; ++i) trainer.channel().compute(*net, ws.training, batch);
            };
        };
        const rbp_bench::Alternation t = rbp_bench::alternate(compute_with(dense), compute_with(sparse), seconds);
        std::string auto_storage;
        for (Index h = 0; h < automatic.channel().num_feedback(); ++h)
            auto_storage += std::string(h ? "," : "") + (automatic.channel().feedback_sparse(h) ? "sparse" : "dense");
        std::printf(
            "{\"sizes\": \"%s\", \"batch\": %ld, \"algorithm\": \"%s\", \"density\": %g, "
            "\"us_sparse\": %.2f, \"us_dense\": %.2f, \"dense_over_sparse\": %.3f, "
            "\"channel_macs_per_example\": %ld, \"auto\": \"%s\"}\n",
            argv[1], static_cast<long>(batch), argv[3], density, t.b_us, t.a_us, t.a_over_b,
            static_cast<long>(sparse.channel().channel_macs(*net)), auto_storage.c_str());
        std::fflush(stdout);
    }
    return 0;
}
