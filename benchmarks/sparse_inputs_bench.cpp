// The first layer on the input's non-zeros (gemm.hpp, "sparse products"): compression of a batch from
// scattered data rows, the forward product and the update, in microseconds per batch.
//
// Build it against a compiled core with the flags of the same instruction set, e.g. (AVX-512; one line)
//   g++ -O3 -DNDEBUG -fopenmp -std=c++17 -mavx512f -mavx512cd -mavx512vl -mavx512bw -mavx512dq -mavx2
//       -mfma -mf16c -Icpp/include -isystem <eigen3> benchmarks/sparse_inputs_bench.cpp
//       <build>/librbp_core_avx512.a -o /tmp/sparse_inputs_bench
// (<eigen3> as in sparse_layer_bench.cpp; -mavx2 -mfma -mf16c with librbp_core_avx2.a.) The inputs are a
// raw float32 file of rows of 784 values, e.g. MNIST's training images, written in Python with
//   train, _ = rbp_native.datasets.load("mnist"); train.x.astype(numpy.float32).tofile("/tmp/mnist.f32")
// and then
//   /tmp/sparse_inputs_bench /tmp/mnist.f32 [batch units batches]     (default 32 100 2000)
// Each batch is `batch` rows drawn at random (a fixed seed), as a shuffled epoch reads them; one thread.
// Prints the mean over the second of two passes over the batches, and a checksum of the weights (equal
// for builds that sum in the same order).
#include "rbp/gemm.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <vector>

using namespace rbp;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s INPUTS.f32 [batch units batches]\n", argv[0]);
        return 2;
    }
    const Index k = 784;
    const Index m = argc > 2 ? std::atol(argv[2]) : 32;
    const Index units = argc > 3 ? std::atol(argv[3]) : 100;
    const Index batches = argc > 4 ? std::atol(argv[4]) : 2000;
    std::ifstream file(argv[1], std::ios::binary | std::ios::ate);
    if (!file) {
        std::fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    const Index n = static_cast<Index>(file.tellg()) / static_cast<Index>(k * sizeof(float));
    if (n < m || m <= 0 || units <= 0 || batches <= 0) {
        std::fprintf(stderr, "need at least one batch of rows and positive sizes\n");
        return 1;
    }
    Matrix<float> x(n, k);
    file.seekg(0);
    file.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(n * k * sizeof(float)));
    if (!sparse_products_available<float>()) {
        std::fprintf(stderr, "this build has no sparse products\n");
        return 1;
    }
    std::mt19937_64 rng(1);
    std::vector<Index> rows(static_cast<std::size_t>(batches * m));
    for (auto& r : rows) r = static_cast<Index>(rng() % static_cast<std::uint64_t>(n));
    const Matrix<float> b = Matrix<float>::Random(m, units);
    const Matrix<float> w = Matrix<float>::Random(units, k) * 0.01f;
    Matrix<float> w_t, s(m, units);
    to_sparse_weight<float>(w, w_t);
    SparseRows<float> sparse;
    using Clock = std::chrono::steady_clock;
    double compress = 0, forward = 0, update = 0;
    for (int pass = 0; pass < 2; ++pass) {
        compress = forward = update = 0;
        for (Index q = 0; q < batches; ++q) {
            const auto t0 = Clock::now();
            compress_rows<float>(x, rows.data() + q * m, m, sparse, 1);
            const auto t1 = Clock::now();
            gemm_sparse_forward<float>(sparse, w_t, s, false);
            const auto t2 = Clock::now();
            gemm_sparse_update<float>(-0.01f, b, sparse, w_t);
            const auto t3 = Clock::now();
            compress += std::chrono::duration<double>(t1 - t0).count();
            forward += std::chrono::duration<double>(t2 - t1).count();
            update += std::chrono::duration<double>(t3 - t2).count();
        }
    }
    const double per = 1e6 / static_cast<double>(batches);
    std::printf("batch %ld, %ld units: compress %.2f us, forward %.2f us, update %.2f us per batch (checksum %.6g)\n",
                static_cast<long>(m), static_cast<long>(units), compress * per, forward * per, update * per,
                static_cast<double>(w_t.sum()));
    return 0;
}
