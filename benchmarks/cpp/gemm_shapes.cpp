// Eigen's packed kernel against the unpacked kernels (cpp/src/unpacked_gemm.hpp) on the shapes of a
// training step, one thread, through rbp::gemm itself. The selection rule in cpp/src/gemm.cpp comes
// from these numbers.
//
//   rbp_gemm_shapes_<isa> [seconds per shape=0.4] [extra shapes as ORIENT:M:N:K ...]
//
// Orientation NT is C = A B^T (forward S = X W^T), NN is C = A B (backward J = G W), TN is
// C += A^T B (update W += s B^T X). The two kernel families are timed alternately in chunks of
// calls, so both see the same machine state; prints one JSON line per shape with the kernel the
// selection rule picks, the median time per product of each family and the median of the per-chunk
// ratios (>1: unpacked faster).
#include "rbp/gemm.hpp"
#include "rbp/parallel.hpp"
#include "timing.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace rbp;

namespace {

struct Shape {
    std::string orient;
    Index m, n, k;
};

void run(const Shape& s, double seconds) {
    const bool ta = s.orient == "TN", tb = s.orient == "NT";
    Matrix<float> a = ta ? Matrix<float>::Random(s.k, s.m) : Matrix<float>::Random(s.m, s.k);
    Matrix<float> b = tb ? Matrix<float>::Random(s.n, s.k) : Matrix<float>::Random(s.k, s.n);
    Matrix<float> c = Matrix<float>::Zero(s.m, s.n);
    const bool accumulate = s.orient != "NN";
    const float alpha = s.orient == "TN" ? 1e-6f : 1.0f;
    auto with_kernels = [&](UnpackedGemm use) {
        return [&, use](int calls) {
            set_unpacked_gemm(use);
            for (int i = 0; i < calls; ++i) gemm<float>(alpha, a, ta, b, tb, c, accumulate);
        };
    };
    const std::string kernel = to_string(gemm_kernel<float>(s.m, s.n, s.k, ta, tb));
    const rbp_bench::Alternation t =
        rbp_bench::alternate(with_kernels(UnpackedGemm::Never), with_kernels(UnpackedGemm::Always), seconds);
    set_unpacked_gemm(UnpackedGemm::WhereFaster);
    const double flop = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k);
    const double te = t.a_us, tu = t.b_us;
    std::printf(
        "{\"orient\": \"%s\", \"m\": %ld, \"n\": %ld, \"k\": %ld, \"selected\": \"%s\", \"eigen_us\": %.3f, "
        "\"unpacked_us\": %.3f, \"eigen_gflops\": %.1f, \"unpacked_gflops\": %.1f, \"speedup\": %.3f}\n",
        s.orient.c_str(), static_cast<long>(s.m), static_cast<long>(s.n), static_cast<long>(s.k), kernel.c_str(), te,
        tu, flop / te / 1e3, flop / tu / 1e3, t.a_over_b);
    std::fflush(stdout);
}

// The products of one training step of an MLP with these layer sizes at this batch size.
void add_step(std::vector<Shape>& shapes, const std::vector<Index>& sizes, Index batch) {
    for (std::size_t h = 1; h < sizes.size(); ++h) {
        const Index in = sizes[h - 1], out = sizes[h];
        shapes.push_back({"NT", batch, out, in});             // forward S = X W^T
        if (h > 1) shapes.push_back({"NN", batch, in, out});  // backward J = G W
        shapes.push_back({"TN", out, in, batch});             // update W += s B^T X
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (!unpacked_gemm_available()) {
        std::fprintf(stderr, "this build has no unpacked kernels (AVX-512 builds only)\n");
        return 1;
    }
    const double seconds = argc > 1 ? std::atof(argv[1]) : 0.4;
    const rbp::ThreadBudget one_thread(1);
    std::vector<Shape> shapes;
    if (argc > 2) {
        for (int i = 2; i < argc; ++i) {
            Shape s;
            char orient[3] = {0, 0, 0};
            long m = 0, n = 0, k = 0;
            if (std::sscanf(argv[i], "%2s:%ld:%ld:%ld", orient, &m, &n, &k) != 4 || m <= 0 || n <= 0 || k <= 0) {
                std::fprintf(stderr, "bad shape '%s' (expected ORIENT:M:N:K, e.g. NT:32:100:784)\n", argv[i]);
                return 2;
            }
            shapes.push_back({orient, m, n, k});
        }
    } else {
        for (Index batch : {16, 32, 64, 128, 256}) {
            add_step(shapes, {784, 100, 100, 100, 100, 10}, batch);
            add_step(shapes, {784, 1000, 1000, 1000, 10}, batch);
        }
    }
    for (const Shape& s : shapes) {
        if (s.orient != "NT" && s.orient != "NN" && s.orient != "TN") {
            std::fprintf(stderr, "orientation must be NT, NN or TN, got '%s'\n", s.orient.c_str());
            return 2;
        }
        run(s, seconds);
    }
    return 0;
}
