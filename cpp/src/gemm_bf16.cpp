#include "gemm_bf16.hpp"

#include "rbp/gemm.hpp"
#include "rbp/parallel.hpp"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef RBP_HAVE_ONEDNN
#include "onednn_common.hpp"

#include <memory>
#include <unordered_map>
#endif

namespace rbp {
namespace {

thread_local bool bf16_scope = false;
std::atomic<Bf16Implementation> bf16_implementation{Bf16Implementation::Auto};

// Round to nearest, ties to even; NaN stays NaN; subnormal inputs become a zero of their sign, as the
// bf16 dot-product instructions (AVX512-BF16, AMX) read them, so that both implementations agree.
// Branch-free (selects, not jumps), so that the rounding loops below vectorise.
inline std::uint16_t bf16_bits(float x) {
    std::uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    const std::uint32_t magnitude = bits & 0x7fffffffu;
    const std::uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    const std::uint32_t quiet_nan = (bits >> 16) | 0x0040u;
    const std::uint32_t signed_zero = (bits >> 16) & 0x8000u;
    const std::uint32_t result =
        magnitude > 0x7f800000u ? quiet_nan : (magnitude < 0x00800000u ? signed_zero : rounded);
    return static_cast<std::uint16_t>(result);
}
inline float bf16_value(float x) {
    const std::uint32_t bits = static_cast<std::uint32_t>(bf16_bits(x)) << 16;
    float rounded;
    std::memcpy(&rounded, &bits, sizeof rounded);
    return rounded;
}

// Rounding the weight matrices costs a pass over them per product: split it between threads once
// there is enough of it (about 0.1 ms of work per thread).
constexpr Index kMinRoundingPerThread = Index(1) << 17;

// x rounded into a dense row-major buffer of the calling thread (grown once per size), each entry
// through `convert` (to bf16 bits, or to a float holding the bf16 value).
template <class Out, class Convert>
Out* round_into(const ConstMatrixRef<float>& x, std::vector<Out>& buffer, const Convert& convert) {
    const Index rows = x.rows(), cols = x.cols();
    const auto size = static_cast<std::size_t>(rows * cols);
    if (buffer.size() < size) buffer.resize(size);
    Out* out = buffer.data();
    const int threads = static_cast<int>(
        std::max<Index>(1, std::min<Index>(product_thread_budget(), rows * cols / kMinRoundingPerThread)));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (Index i = 0; i < rows; ++i) {
        const float* in = x.row(i).data();
        Out* row = out + i * cols;
        for (Index j = 0; j < cols; ++j) row[j] = convert(in[j]);
    }
    return out;
}

// The rounded operands through the float32 kernels (builds without oneDNN, and the tests' reference
// path): every product of two bf16 values is exact in float32, so this sums the same terms.
void portable_bf16_gemm(float alpha, const ConstMatrixRef<float>& a, bool ta, const ConstMatrixRef<float>& b, bool tb,
                        MatrixRef<float> c, bool accumulate) {
    thread_local std::vector<float> a_buffer, b_buffer;
    const auto convert = [](float x) { return bf16_value(x); };
    const float* ra = round_into(a, a_buffer, convert);
    const float* rb = round_into(b, b_buffer, convert);
    using Map = Eigen::Map<const Matrix<float>>;
    const Bf16Products float_kernels(false);
    gemm<float>(alpha, Map(ra, a.rows(), a.cols()), ta, Map(rb, b.rows(), b.cols()), tb, c, accumulate);
}

#ifdef RBP_HAVE_ONEDNN

using dnnl::memory;

// A cached matmul: bf16 op(A) (m x k) times bf16 op(B) (k x n) into float32 C (m x n, row stride ldc),
// times a run-time scale (alpha), plus C when accumulating. oneDNN fixes the thread count at
// creation, so it is part of the key.
struct MatmulKey {
    Index m, n, k, ldc;
    bool ta, tb, accumulate;
    int threads;
    bool operator==(const MatmulKey& o) const {
        return m == o.m && n == o.n && k == o.k && ldc == o.ldc && ta == o.ta && tb == o.tb &&
               accumulate == o.accumulate && threads == o.threads;
    }
};
struct MatmulKeyHash {
    std::size_t operator()(const MatmulKey& key) const {
        std::size_t h = 0;
        for (Index v :
             {key.m, key.n, key.k, key.ldc, Index(key.ta), Index(key.tb), Index(key.accumulate), Index(key.threads)})
            h = h * 1000003u ^ std::hash<Index>()(v);
        return h;
    }
};
struct Matmul {
    dnnl::matmul primitive;
    memory a, b, c, scale;
    std::unordered_map<int, memory> args;  // the same handles, their data pointers set at each call
};

// Everything per thread: the stream, the primitives, the bf16 copies of the operands.
struct Bf16State {
    dnnl::stream stream{onednn_detail::cpu_engine()};
    std::unordered_map<MatmulKey, std::unique_ptr<Matmul>, MatmulKeyHash> matmuls;
    std::vector<std::uint16_t> a, b;
};
Bf16State& state() {
    thread_local Bf16State s;
    return s;
}

Matmul& matmul_for(const MatmulKey& key) {
    std::unique_ptr<Matmul>& entry = state().matmuls[key];
    if (entry) return *entry;
    const dnnl::engine& engine = onednn_detail::cpu_engine();
    // op(A)(i, p) is A(p, i) when transposed: the stored rows are then op(A)'s columns.
    const memory::desc a_desc({key.m, key.k}, memory::data_type::bf16,
                              key.ta ? memory::dims{1, key.m} : memory::dims{key.k, 1});
    const memory::desc b_desc({key.k, key.n}, memory::data_type::bf16,
                              key.tb ? memory::dims{1, key.k} : memory::dims{key.n, 1});
    const memory::desc c_desc({key.m, key.n}, memory::data_type::f32, memory::dims{key.ldc, 1});
    dnnl::primitive_attr attr;
    attr.set_scales_mask(DNNL_ARG_WEIGHTS, 0);
    if (key.accumulate) {
        dnnl::post_ops ops;
        ops.append_sum(1.0f);
        attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(engine, a_desc, b_desc, c_desc, attr);
    entry = std::make_unique<Matmul>();
    entry->primitive = dnnl::matmul(pd);
    entry->a = memory(a_desc, engine, DNNL_MEMORY_NONE);
    entry->b = memory(b_desc, engine, DNNL_MEMORY_NONE);
    entry->c = memory(c_desc, engine, DNNL_MEMORY_NONE);
    entry->scale = memory(memory::desc({1}, memory::data_type::f32, memory::dims{1}), engine, DNNL_MEMORY_NONE);
    entry->args = {{DNNL_ARG_SRC, entry->a},
                   {DNNL_ARG_WEIGHTS, entry->b},
                   {DNNL_ARG_DST, entry->c},
                   {DNNL_ARG_ATTR_SCALES | DNNL_ARG_WEIGHTS, entry->scale}};
    return *entry;
}

void onednn_bf16_gemm(float alpha, const ConstMatrixRef<float>& a, bool ta, const ConstMatrixRef<float>& b, bool tb,
                      MatrixRef<float> c, bool accumulate) {
    const Index m = c.rows(), n = c.cols(), k = ta ? a.rows() : a.cols();
    const int threads = product_threads(m, n, k, product_thread_budget());
    Bf16State& s = state();
    const auto convert = [](float x) { return bf16_bits(x); };
    std::uint16_t* ra = round_into(a, s.a, convert);
    std::uint16_t* rb = round_into(b, s.b, convert);
    const onednn_detail::OmpThreads scope(threads);
    Matmul& mm = matmul_for({m, n, k, c.outerStride(), ta, tb, accumulate, threads});
    mm.a.set_data_handle(ra);
    mm.b.set_data_handle(rb);
    mm.c.set_data_handle(c.data());
    mm.scale.set_data_handle(&alpha);
    mm.primitive.execute(s.stream, mm.args);
    s.stream.wait();
}

#endif  // RBP_HAVE_ONEDNN

}  // namespace

Bf16Products::Bf16Products(bool on) : saved_(bf16_scope) { bf16_scope = on; }
Bf16Products::~Bf16Products() { bf16_scope = saved_; }
bool bf16_products() { return bf16_scope; }

void set_bf16_implementation(Bf16Implementation implementation) {
    bf16_implementation.store(implementation, std::memory_order_relaxed);
}

bool bf16_onednn() {
#ifdef RBP_HAVE_ONEDNN
    return bf16_implementation.load(std::memory_order_relaxed) == Bf16Implementation::Auto;
#else
    return false;
#endif
}

float round_to_bf16(float x) { return bf16_value(x); }

void bf16_gemm(float alpha, const ConstMatrixRef<float>& a, bool ta, const ConstMatrixRef<float>& b, bool tb,
               MatrixRef<float> c, bool accumulate) {
#ifdef RBP_HAVE_ONEDNN
    if (bf16_onednn()) {
        onednn_bf16_gemm(alpha, a, ta, b, tb, c, accumulate);
        return;
    }
#endif
    portable_bf16_gemm(alpha, a, ta, b, tb, c, accumulate);
}

}  // namespace rbp
