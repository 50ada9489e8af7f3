#include "gemm_bf16.hpp"

#include "onednn_plugin.hpp"
#include "rbp/gemm.hpp"
#include "rbp/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace rbp {
namespace {

thread_local bool bf16_scope = false;
std::atomic<Bf16Implementation> bf16_implementation{Bf16Implementation::Auto};
std::atomic<bool> operand_reuse{true};
thread_local std::int64_t operand_roundings = 0;  // for the tests: rounding passes on this thread

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
    ++operand_roundings;
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

// An operand whose rounded copies later products may reuse (remember_bf16_operand). A scope
// remembers a network's weights and feedback matrices: a few entries, searched in order. When the
// scope closes the entries are freed but keep their buffers for the next scope (each call of the
// trainer opens one): new buffers there cost page faults, measured at 1% of a wide-net epoch.
struct RememberedOperand {
    const float* data = nullptr;
    Index rows = 0, cols = 0, stride = 0;
    bool constant = false;
    bool has_bits = false, has_values = false;  // whether the copies below are current
    std::vector<std::uint16_t> bits;            // for oneDNN
    std::vector<float> values;                  // for the float32 kernels
    void release() {
        data = nullptr;
        rows = cols = stride = 0;
        constant = has_bits = has_values = false;
    }
    bool is(const ConstMatrixRef<float>& x) const {
        return x.data() == data && x.rows() == rows && x.cols() == cols && x.outerStride() == stride;
    }
};
thread_local std::vector<RememberedOperand> remembered;
// Only matrices whose rounded copy stays in a core's cache between its uses are remembered: a product
// at a small batch streams its weights, and rounding them again into the hot scratch buffer was faster
// than reading a copy made earlier from memory (wide net, 1000 x 1000 weights, batch 32: 8-13% slower
// with the copies; the MNIST net, 100-unit layers: 3% faster; benchmarks/README.md).
constexpr Index kMaxRememberedValues = Index(1) << 18;  // 512 KiB of bf16

RememberedOperand* find_remembered(const ConstMatrixRef<float>& x) {
    for (auto& r : remembered)
        if (r.is(x)) return &r;
    return nullptr;
}

// x rounded: the remembered copy (made now if it is not current), else into `scratch`.
template <class Out, class Convert>
const Out* rounded(const ConstMatrixRef<float>& x, std::vector<Out>& scratch, const Convert& convert) {
    RememberedOperand* r = find_remembered(x);
    if (r == nullptr) return round_into(x, scratch, convert);
    constexpr bool bits = std::is_same_v<Out, std::uint16_t>;
    bool& current = bits ? r->has_bits : r->has_values;
    std::vector<Out>* copy;
    if constexpr (bits)
        copy = &r->bits;
    else
        copy = &r->values;
    if (!current) round_into(x, *copy, convert);
    current = true;
    return copy->data();
}

// The rounded operands through the float32 kernels (builds without oneDNN, and the tests' reference
// path): every product of two bf16 values is exact in float32, so this sums the same terms.
void portable_bf16_gemm(float alpha, const ConstMatrixRef<float>& a, bool ta, const ConstMatrixRef<float>& b, bool tb,
                        MatrixRef<float> c, bool accumulate) {
    thread_local std::vector<float> a_buffer, b_buffer;
    const auto convert = [](float x) { return bf16_value(x); };
    const float* ra = rounded(a, a_buffer, convert);
    const float* rb = rounded(b, b_buffer, convert);
    using Map = Eigen::Map<const Matrix<float>>;
    const Bf16Products float_kernels(false);
    gemm<float>(alpha, Map(ra, a.rows(), a.cols()), ta, Map(rb, b.rows(), b.cols()), tb, c, accumulate);
}

// The rounded operands' bits through oneDNN's matmul, in the plugin (opened by the first call).
void onednn_bf16_gemm(float alpha, const ConstMatrixRef<float>& a, bool ta, const ConstMatrixRef<float>& b, bool tb,
                      MatrixRef<float> c, bool accumulate) {
    const Index m = c.rows(), n = c.cols(), k = ta ? a.rows() : a.cols();
    const RbpOneDnnPlugin& plugin = onednn_plugin();
    const int threads = product_threads(m, n, k, product_thread_budget());
    thread_local std::vector<std::uint16_t> a_buffer, b_buffer;
    const auto convert = [](float x) { return bf16_bits(x); };
    const std::uint16_t* ra = rounded(a, a_buffer, convert);
    const std::uint16_t* rb = rounded(b, b_buffer, convert);
    check_onednn(plugin.bf16_matmul(alpha, ra, ta, rb, tb, c.data(), m, n, k, c.outerStride(), accumulate, threads));
}

}  // namespace

Bf16Products::Bf16Products(bool on) : saved_(bf16_scope) {
    // Opens the plugin here, so that a missing oneDNN runtime fails before a step changes anything.
    if (on && !saved_ && bf16_onednn()) onednn_plugin();
    bf16_scope = on;
}
Bf16Products::~Bf16Products() {
    if (bf16_scope && !saved_)  // the outermost scope that turned them on
        for (auto& r : remembered) r.release();
    bf16_scope = saved_;
}
bool bf16_products() { return bf16_scope; }

void remember_bf16_operand(const ConstMatrixRef<float>& m, bool constant) {
    if (!bf16_scope || !operand_reuse.load(std::memory_order_relaxed) || m.size() > kMaxRememberedValues) return;
    if (RememberedOperand* r = find_remembered(m)) {
        r->constant = constant;
        return;
    }
    auto free = std::find_if(remembered.begin(), remembered.end(), [](const auto& r) { return r.data == nullptr; });
    RememberedOperand& r = free != remembered.end() ? *free : remembered.emplace_back();
    r.release();
    r.data = m.data();
    r.rows = m.rows();
    r.cols = m.cols();
    r.stride = m.outerStride();
    r.constant = constant;
}

void forget_bf16_operands(bool constant_too) {
    for (auto& r : remembered)
        if (constant_too || !r.constant) r.has_bits = r.has_values = false;
}

void set_bf16_implementation(Bf16Implementation implementation) {
    bf16_implementation.store(implementation, std::memory_order_relaxed);
}

bool bf16_onednn() {
    return onednn_built() && bf16_implementation.load(std::memory_order_relaxed) == Bf16Implementation::Auto;
}

float round_to_bf16(float x) { return bf16_value(x); }

void set_bf16_operand_reuse(bool on) { operand_reuse.store(on, std::memory_order_relaxed); }
std::int64_t bf16_operand_roundings() { return operand_roundings; }

void bf16_gemm(float alpha, const ConstMatrixRef<float>& a, bool ta, const ConstMatrixRef<float>& b, bool tb,
               MatrixRef<float> c, bool accumulate) {
    if (bf16_onednn()) {
        onednn_bf16_gemm(alpha, a, ta, b, tb, c, accumulate);
        return;
    }
    portable_bf16_gemm(alpha, a, ta, b, tb, c, accumulate);
}

}  // namespace rbp
