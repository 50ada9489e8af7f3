// SparseLayer against DenseLayer: forward, adjoint (BP's channel) and update of one layer.
//
// Build it against a compiled core with the flags of the same instruction set, e.g. (AVX2)
//   g++ -O3 -DNDEBUG -fopenmp -std=c++17 -mavx2 -mfma -mf16c -Icpp/include -isystem <eigen3> \
//       benchmarks/sparse_layer_bench.cpp <build>/librbp_core_avx2.a -o /tmp/sparse_bench
//   OMP_NUM_THREADS=1 /tmp/sparse_bench [n_in n_out batch rounds]     (default 784 1000 100 200)
// (librbp_core.a with no flags for SSE2; the AVX-512 flags of CMakeLists.txt with librbp_core_avx512.a).
// (<eigen3>: python -c "import cmeel, os; print(os.path.join(cmeel.__path__[0], '..', 'cmeel.prefix',
// 'include', 'eigen3'))" or /usr/include/eigen3). Prints, for float32, the best time of each phase in
// microseconds over rounds that run every layer in turn (so that all of them see the same machine;
// other processes only ever add time), and the speed-up of forward + adjoint + update over the dense
// layer.
#include "rbp/sparse_layer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

using namespace rbp;
using T = float;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
}

// One layer under test with its operands and the best time of each phase so far.
struct Case {
    std::unique_ptr<Layer<T>> layer;
    std::string name;
    Matrix<T> x, s, g, j;
    std::vector<Matrix<T>*> targets;
    double forward = 1e300, backward = 1e300, update = 1e300;

    void run_once() {
        auto start = std::chrono::steady_clock::now();
        layer->forward(x, s);
        forward = std::min(forward, seconds_since(start));
        start = std::chrono::steady_clock::now();
        layer->backward(g, j);
        backward = std::min(backward, seconds_since(start));
        start = std::chrono::steady_clock::now();
        layer->accumulate_update(g, x, T(1e-6), targets);
        update = std::min(update, seconds_since(start));
    }
    double total() const { return forward + backward + update; }
};

}  // namespace

int main(int argc, char** argv) {
    const Index inputs = argc > 1 ? std::atol(argv[1]) : 784;
    const Index outputs = argc > 2 ? std::atol(argv[2]) : 1000;
    const Index n = argc > 3 ? std::atol(argv[3]) : 100;
    const int repeats = argc > 4 ? std::atoi(argv[4]) : 200;
    std::printf("layer %ld -> %ld, batch %ld, float32, %d thread(s); best of %d interleaved rounds, microseconds\n",
                static_cast<long>(inputs), static_cast<long>(outputs), static_cast<long>(n), Eigen::nbThreads(),
                repeats);
    Rng init(1);
    std::vector<Case> cases;
    auto add = [&](std::unique_ptr<Layer<T>> layer, std::string name) {
        layer->initialise(Init::GlorotNormal, init);
        Case c;
        c.x = Matrix<T>(n, inputs);
        c.g = Matrix<T>(n, outputs);
        c.s = Matrix<T>(n, outputs);
        c.j = Matrix<T>(n, inputs);
        Rng data(7);
        fill_normal(c.x, 1.0, data);
        fill_normal(c.g, 1.0, data);
        c.layer = std::move(layer);
        c.targets = c.layer->parameters();
        c.name = std::move(name);
        cases.push_back(std::move(c));
    };
    add(std::make_unique<DenseLayer<T>>(inputs, outputs, true), "dense");
    for (double p : {0.5, 0.3, 0.2, 0.1, 0.05, 0.01}) {
        Rng mask(derive_seed(1, "connectivity"));
        char name[16];
        std::snprintf(name, sizeof name, "%.2f", p);
        add(std::make_unique<SparseLayer<T>>(inputs, outputs, true, p, mask), name);
    }
    for (int r = 0; r < repeats; ++r)
        for (auto& c : cases) c.run_once();
    std::printf("%-8s %9s %10s %10s %10s %10s %8s\n", "density", "nnz", "forward", "backward", "update", "total",
                "speedup");
    const double dense = cases.front().total();
    for (const auto& c : cases)
        std::printf("%-8s %9ld %10.1f %10.1f %10.1f %10.1f %8.2f\n", c.name.c_str(),
                    static_cast<long>(c.layer->forward_macs()), c.forward, c.backward, c.update, c.total(),
                    dense / c.total());
    return 0;
}
