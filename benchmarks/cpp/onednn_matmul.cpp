// oneDNN's matmul on the training step's shapes in three forms: float32, float32 with
// fpmath_mode::bf16 (oneDNN may then compute in bf16 internally), and bf16 operands with a float32
// result (the operands converted once, outside the timing). Prints the implementation oneDNN chose, the
// best GFLOP/s of 7 repeats and the largest difference from the float32 result relative to its largest
// entry. Measures whether the bf16 option of the performance issue would pay on this CPU; the core does
// not use matmul. Built with the benchmark programs when the build has oneDNN:
//
//   cmake --build build/bench --target rbp_onednn_matmul
//   OMP_NUM_THREADS=1 build/bench/rbp_onednn_matmul
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <unordered_map>
#include <vector>

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Type = memory::data_type;

struct Shape {
    const char* name;
    memory::dim m, n, k;
    bool transposed_b;  // B stored n x k (the forward product S = X W^T)
};

enum class Form { F32, F32WithBf16Math, Bf16Operands };
const char* to_string(Form form) {
    switch (form) {
        case Form::F32: return "f32";
        case Form::F32WithBf16Math: return "f32, fpmath bf16";
        case Form::Bf16Operands: return "bf16 operands";
    }
    return "?";
}

// C (m x n, float32) = A B in `form`; returns GFLOP/s and leaves the result in c.
double run(const dnnl::engine& engine, dnnl::stream& stream, const Shape& shape, Form form, std::vector<float>& a,
           std::vector<float>& b, std::vector<float>& c, std::string& implementation) {
    const Type operand = form == Form::Bf16Operands ? Type::bf16 : Type::f32;
    const memory::desc a_user({shape.m, shape.k}, Type::f32, Tag::ab);
    const memory::desc b_user({shape.k, shape.n}, Type::f32, shape.transposed_b ? Tag::ba : Tag::ab);
    const memory::desc a_desc({shape.m, shape.k}, operand, Tag::ab);
    const memory::desc b_desc({shape.k, shape.n}, operand, shape.transposed_b ? Tag::ba : Tag::ab);
    const memory::desc c_desc({shape.m, shape.n}, Type::f32, Tag::ab);
    dnnl::primitive_attr attr;
    if (form == Form::F32WithBf16Math) attr.set_fpmath_mode(dnnl::fpmath_mode::bf16);
    const dnnl::matmul::primitive_desc pd(engine, a_desc, b_desc, c_desc, attr);
    implementation = pd.impl_info_str();
    const dnnl::matmul matmul(pd);
    memory a_mem(a_desc, engine), b_mem(b_desc, engine), c_mem(c_desc, engine, c.data());
    memory a_src(a_user, engine, a.data()), b_src(b_user, engine, b.data());
    dnnl::reorder(a_src, a_mem).execute(stream, a_src, a_mem);
    dnnl::reorder(b_src, b_mem).execute(stream, b_src, b_mem);
    const std::unordered_map<int, memory> args{{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};
    matmul.execute(stream, args);
    stream.wait();
    const double flop = 2.0 * static_cast<double>(shape.m * shape.n * shape.k);
    const int calls = static_cast<int>(std::max(3.0, 4.0e8 / flop));
    double best = 0;
    for (int repeat = 0; repeat < 7; ++repeat) {
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < calls; ++i) matmul.execute(stream, args);
        stream.wait();
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        best = std::max(best, flop * calls / seconds / 1e9);
    }
    return best;
}

}  // namespace

int main() {
    const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    dnnl::stream stream(engine);
    const Shape shapes[] = {{"S = X W^T, 128 x 784 -> 100", 128, 100, 784, true},
                            {"S = X W^T, 128 x 1000 -> 1000", 128, 1000, 1000, true},
                            {"W update, 100 x 784, k 128", 100, 784, 128, false},
                            {"W update, 1000 x 1000, k 128", 1000, 1000, 128, false},
                            {"2048 x 2048 x 2048", 2048, 2048, 2048, false}};
    std::mt19937 rng(0);
    std::normal_distribution<float> normal;
    for (const Shape& shape : shapes) {
        std::vector<float> a(static_cast<size_t>(shape.m * shape.k)), b(static_cast<size_t>(shape.k * shape.n));
        std::vector<float> c(static_cast<size_t>(shape.m * shape.n)), reference;
        for (float& v : a) v = normal(rng);
        for (float& v : b) v = normal(rng);
        for (Form form : {Form::F32, Form::F32WithBf16Math, Form::Bf16Operands}) {
            std::string implementation;
            const double gflops = run(engine, stream, shape, form, a, b, c, implementation);
            if (form == Form::F32) reference = c;
            double difference = 0, largest = 0;
            for (size_t i = 0; i < c.size(); ++i) {
                difference = std::max(difference, static_cast<double>(std::fabs(c[i] - reference[i])));
                largest = std::max(largest, static_cast<double>(std::fabs(reference[i])));
            }
            std::printf("%-30s %-17s %-22s %6.0f GFLOP/s  difference %.1e\n", shape.name, to_string(form),
                        implementation.c_str(), gflops, difference / largest);
            std::fflush(stdout);
        }
    }
    return 0;
}
