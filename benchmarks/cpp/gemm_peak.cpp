// Single-precision GEMM throughput of Eigen's own kernels, compiled with the flags of one
// instruction-set variant of rbp-native: the "machine peak" the training benchmarks compare with.
//
//   rbp_gemm_peak_<isa> [n=2048] [threads=1] [seconds=1.0]
//
// Times C = A * B for n x n row-major float matrices (2 n^3 flops per product) over repeated
// products for at least `seconds`, and prints one JSON line with the best and median rate.
#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

int main(int argc, char** argv) {
    const Eigen::Index n = argc > 1 ? std::atol(argv[1]) : 2048;
    const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
    const double seconds = argc > 3 ? std::atof(argv[3]) : 1.0;
    Eigen::setNbThreads(threads);
    Matrix a = Matrix::Random(n, n), b = Matrix::Random(n, n), c(n, n);
    c.noalias() = a * b;  // warm-up: page faults, thread start
    std::vector<double> rates;
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    while (rates.size() < 3 || std::chrono::duration<double>(clock::now() - start).count() < seconds) {
        const auto t0 = clock::now();
        c.noalias() = a * b;
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        rates.push_back(2.0 * double(n) * double(n) * double(n) / dt / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    std::printf(
        "{\"n\": %ld, \"threads\": %d, \"eigen_threads\": %d, \"repeats\": %zu, \"gflops_best\": %.2f, "
        "\"gflops_median\": %.2f, \"checksum\": %.6g, \"simd\": \"%s\"}\n",
        static_cast<long>(n), threads, Eigen::nbThreads(), rates.size(), rates.back(), rates[rates.size() / 2],
        static_cast<double>(c(0, 0)), Eigen::SimdInstructionSetsInUse());
    return 0;
}
