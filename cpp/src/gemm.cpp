#include "rbp/gemm.hpp"

#include "gemm_bf16.hpp"
#include "rbp/parallel.hpp"
#include "unpacked_gemm.hpp"

#include <algorithm>
#include <atomic>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <type_traits>

// Eigen's level-3 kernels are called directly (Eigen::internal, stable through the 3.4 series);
// with any other Eigen the products fall back to Eigen's expressions.
#if EIGEN_VERSION_AT_LEAST(3, 4, 0) && !EIGEN_VERSION_AT_LEAST(3, 4, 90)
#define RBP_DIRECT_GEMM 1
#else
#define RBP_DIRECT_GEMM 0
#endif

namespace rbp {
namespace {

// op(a) op(b) through Eigen's expressions: matrix-vector shapes, tiny products, other Eigen versions.
template <class T, class A, class B>
void expression_product(T alpha, const A& a, const B& b, MatrixRef<T>& c, bool accumulate) {
    if (accumulate)
        c.noalias() += alpha * (a * b);
    else
        c.noalias() = alpha * (a * b);
}

template <class T>
void expression_gemm(T alpha, const ConstMatrixRef<T>& a, bool ta, const ConstMatrixRef<T>& b, bool tb, MatrixRef<T>& c,
                     bool accumulate) {
    if (ta && tb)
        expression_product(alpha, a.transpose(), b.transpose(), c, accumulate);
    else if (ta)
        expression_product(alpha, a.transpose(), b, c, accumulate);
    else if (tb)
        expression_product(alpha, a, b.transpose(), c, accumulate);
    else
        expression_product(alpha, a, b, c, accumulate);
}

#if RBP_DIRECT_GEMM

// Packing buffers of the calling thread, grown on demand and kept until the thread ends.
template <class T>
struct PackingBuffer {
    T* data = nullptr;
    std::size_t size = 0;
    T* reserve(std::size_t n) {
        if (n > size) {
            Eigen::internal::aligned_free(data);
            data = static_cast<T*>(Eigen::internal::aligned_malloc(n * sizeof(T)));
            size = n;
        }
        return data;
    }
    ~PackingBuffer() { Eigen::internal::aligned_free(data); }
};

GemmBlocking blocking_in_force();

// Eigen's cache blocking for one sequential product, pointing at the thread's buffers; with WholeDepth
// (gemm.hpp) a depth Eigen would split stays whole where the packed right-hand block fits in half the L2,
// its rows blocked as Eigen blocks them for an unsplit depth (its "actual_l2" of 1.5 MB over three).
template <class T>
class Blocking : public Eigen::internal::level3_blocking<T, T> {
public:
    Blocking(Index rows, Index cols, Index depth) {
        this->m_mc = rows;
        this->m_nc = cols;
        this->m_kc = depth;
        Eigen::internal::computeProductBlockingSizes<T, T, 1>(this->m_kc, this->m_mc, this->m_nc, Index(1));
        const auto bytes = static_cast<std::ptrdiff_t>(depth * cols * Index(sizeof(T)));
        if (this->m_kc < depth && 2 * bytes <= Eigen::l2CacheSize() &&
            blocking_in_force() == GemmBlocking::WholeDepth) {
            constexpr Index mr = Eigen::internal::gebp_traits<T, T>::mr;
            const Index row_block = Index(1572864) / (3 * depth * Index(sizeof(T)));
            this->m_kc = depth;
            this->m_nc = cols;
            this->m_mc = std::min(rows, std::max(mr, row_block - row_block % mr));
        }
        thread_local PackingBuffer<T> a, b;
        this->m_blockA = a.reserve(static_cast<std::size_t>(this->m_kc * this->m_mc));
        this->m_blockB = b.reserve(static_cast<std::size_t>(this->m_kc * this->m_nc));
    }
};

// Column-major res (rows x cols) += alpha * lhs (rows x depth) * rhs (depth x cols).
template <class T, int LhsOrder, int RhsOrder>
void colmajor_gemm(Index rows, Index cols, Index depth, const T* lhs, Index lhs_stride, const T* rhs, Index rhs_stride,
                   T* res, Index res_stride, T alpha) {
    Blocking<T> blocking(rows, cols, depth);
    Eigen::internal::general_matrix_matrix_product<Index, T, LhsOrder, false, T, RhsOrder, false, Eigen::ColMajor,
                                                   1>::run(rows, cols, depth, lhs, lhs_stride, rhs, rhs_stride, res, 1,
                                                           res_stride, alpha, blocking, nullptr);
}

// c += alpha * op(a) op(b) on this thread. Row-major C = op(A) op(B) is column-major
// C^T = op(B)^T op(A)^T, whose operands are B and A read with the opposite storage order.
template <class T>
void serial_gemm(T alpha, const ConstMatrixRef<T>& a, bool ta, const ConstMatrixRef<T>& b, bool tb, MatrixRef<T> c) {
    constexpr int Row = Eigen::RowMajor, Col = Eigen::ColMajor;
    const Index m = c.rows(), n = c.cols(), k = ta ? a.rows() : a.cols();
    const T* pa = a.data();
    const T* pb = b.data();
    const Index sa = a.outerStride(), sb = b.outerStride();
    if (tb) {
        if (ta)
            colmajor_gemm<T, Row, Row>(n, m, k, pb, sb, pa, sa, c.data(), c.outerStride(), alpha);
        else
            colmajor_gemm<T, Row, Col>(n, m, k, pb, sb, pa, sa, c.data(), c.outerStride(), alpha);
    } else {
        if (ta)
            colmajor_gemm<T, Col, Row>(n, m, k, pb, sb, pa, sa, c.data(), c.outerStride(), alpha);
        else
            colmajor_gemm<T, Col, Col>(n, m, k, pb, sb, pa, sa, c.data(), c.outerStride(), alpha);
    }
}

#endif  // RBP_DIRECT_GEMM

std::atomic<UnpackedGemm> unpacked_use{UnpackedGemm::WhereFaster};
std::atomic<GemmProfile> profile_setting{GemmProfile::Detect};
std::atomic<GemmBlocking> blocking_setting{GemmBlocking::Detect};
std::atomic<bool> zero_skipping{true};
std::atomic<bool> sparse_products{true};

// AMD family 19h: Zen 3 (no AVX-512) and Zen 4; with AVX-512, Zen 4. Zen 5 (family 1Ah) runs 512-bit
// FMAs at full width and was not measured: it takes the generic rule.
bool running_on_zen4() {
#if defined(__x86_64__) || defined(__i386__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return false;
    const bool amd = ebx == 0x68747541u && edx == 0x69746e65u && ecx == 0x444d4163u;  // "AuthenticAMD"
    if (!amd || __get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
    const unsigned base = (eax >> 8) & 0xfu;
    const unsigned family = base == 0xfu ? base + ((eax >> 20) & 0xffu) : base;
    if (family != 0x19u || __get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & (1u << 16)) != 0;  // AVX512F
#else
    return false;
#endif
}

GemmProfile profile_in_force() {
    const GemmProfile set = profile_setting.load(std::memory_order_relaxed);
    if (set != GemmProfile::Detect) return set;
    static const GemmProfile detected = running_on_zen4() ? GemmProfile::Zen4 : GemmProfile::Generic;
    return detected;
}

// Measured with the AVX-512 build only: the other builds keep Eigen's blocking.
GemmBlocking blocking_in_force() {
    const GemmBlocking set = blocking_setting.load(std::memory_order_relaxed);
    if (set != GemmBlocking::Detect) return set;
#if defined(__AVX512F__)
    static const GemmBlocking detected =
        Eigen::l1CacheSize() >= 48 * 1024 ? GemmBlocking::WholeDepth : GemmBlocking::Eigen;
    return detected;
#else
    return GemmBlocking::Eigen;
#endif
}

// The kernel family for one thread's part of a product, C (m x n) = op(A) (m x k) op(B) (k x n).
// The unpacked kernels (single precision, AVX-512 and AVX2 builds) run where they beat Eigen's, as
// measured with benchmarks/cpp/gemm_shapes.cpp on a 2-core AVX-512 Xeon, which runs both builds, and
// for the AVX-512 dot form also on a 2-vCPU AMD Zen 4 EPYC (GemmProfile; numbers in benchmarks/README.md).
template <class T>
GemmKernel serial_kernel(Index m, Index n, Index k, bool ta, bool tb) {
    const UnpackedGemm use = unpacked_use.load(std::memory_order_relaxed);
    if (!std::is_same_v<T, float> || !RBP_UNPACKED_GEMM || use == UnpackedGemm::Never || (ta && tb))
        return GemmKernel::Eigen;
    if (use == UnpackedGemm::Always) return tb ? GemmKernel::UnpackedDot : GemmKernel::UnpackedAxpy;
    const double macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
#if defined(__AVX512F__)
    // Dot form (S = X W^T): its final reductions cost too much at a short depth, unless C has fewer
    // columns than a vector (the output layer), where Eigen's kernel runs on partial vectors. Above a
    // depth of 256: up to 64M multiply-accumulates on a Xeon, up to batch 768 on a Zen 4 (GemmProfile).
    if (tb) {
        const bool deep_enough = k >= 256 && (profile_in_force() == GemmProfile::Zen4 ? m <= 768 : macs <= 64.0e6);
        return n < 16 || deep_enough ? GemmKernel::UnpackedDot : GemmKernel::Eigen;
    }
    // Axpy form: J = G W wins up to the largest products measured; W += s B^T X only for layers of up
    // to a few hundred units (a 1000-unit layer's update is faster through Eigen).
    if (!ta) return macs <= 128.0e6 ? GemmKernel::UnpackedAxpy : GemmKernel::Eigen;
    return m < 16 || (m <= 256 && macs <= 64.0e6) ? GemmKernel::UnpackedAxpy : GemmKernel::Eigen;
#else
    // AVX2 (16 registers, smaller blocks): the dot form wins for the output layer and, at a long
    // depth, for batches up to 48; the axpy form for J = G W up to 64M multiply-accumulates and for
    // the updates of layers of up to 256 units by 256 inputs. Eigen's packed kernel keeps the rest:
    // the 100 -> 100 forward products, large batches' forward products and 1000-unit updates.
    if (tb) return n < 16 || (k >= 256 && m <= 48) ? GemmKernel::UnpackedDot : GemmKernel::Eigen;
    if (!ta) return macs <= 64.0e6 ? GemmKernel::UnpackedAxpy : GemmKernel::Eigen;
    return m < 16 || (m <= 256 && n <= 256) ? GemmKernel::UnpackedAxpy : GemmKernel::Eigen;
#endif
}

// c (+)= alpha op(a) op(b) on this thread, with `kernel` (serial_kernel's choice for this product).
template <class T>
void serial_product([[maybe_unused]] GemmKernel kernel, T alpha, const ConstMatrixRef<T>& a, bool ta,
                    const ConstMatrixRef<T>& b, bool tb, MatrixRef<T> c, bool accumulate) {
    // Unused where neither the unpacked nor the direct kernels are compiled in (sse2 without them).
    [[maybe_unused]] const Index m = c.rows(), n = c.cols(), k = ta ? a.rows() : a.cols();
#if RBP_UNPACKED_GEMM
    if constexpr (std::is_same_v<T, float>) {
        switch (kernel) {
            case GemmKernel::UnpackedDot:
                unpacked::gemm_nt(m, n, k, alpha, a.data(), a.outerStride(), b.data(), b.outerStride(), c.data(),
                                  c.outerStride(), accumulate);
                return;
            case GemmKernel::UnpackedAxpy:
                if (ta)  // op(A)(i, p) = A(p, i)
                    unpacked::gemm_axpy(m, n, k, alpha, a.data(), 1, a.outerStride(), b.data(), b.outerStride(),
                                        c.data(), c.outerStride(), accumulate);
                else
                    unpacked::gemm_axpy(m, n, k, alpha, a.data(), a.outerStride(), 1, b.data(), b.outerStride(),
                                        c.data(), c.outerStride(), accumulate);
                return;
            default: break;
        }
    }
#endif
#if RBP_DIRECT_GEMM
    if (!accumulate) c.setZero();
    serial_gemm(alpha, a, ta, b, tb, c);
#else
    expression_gemm(alpha, a, ta, b, tb, c, accumulate);
#endif
}

bool vector_shape(Index m, Index n, Index k) { return m == 1 || n == 1 || k == 1 || m + n + k < 20; }

}  // namespace

bool unpacked_gemm_available() { return RBP_UNPACKED_GEMM != 0; }
void set_unpacked_gemm(UnpackedGemm use) { unpacked_use.store(use, std::memory_order_relaxed); }
void set_gemm_profile(GemmProfile profile) { profile_setting.store(profile, std::memory_order_relaxed); }
GemmProfile gemm_profile() { return profile_in_force(); }
void set_gemm_blocking(GemmBlocking blocking) { blocking_setting.store(blocking, std::memory_order_relaxed); }
GemmBlocking gemm_blocking() { return blocking_in_force(); }

template <class T>
GemmKernel gemm_kernel(Index m, Index n, Index k, bool transpose_a, bool transpose_b) {
    if (m == 0 || n == 0 || k == 0) return GemmKernel::None;
    if (vector_shape(m, n, k)) return GemmKernel::EigenVector;
    return serial_kernel<T>(m, n, k, transpose_a, transpose_b);
}

const char* to_string(GemmKernel kernel) {
    switch (kernel) {
        case GemmKernel::None: return "none";
        case GemmKernel::EigenVector: return "eigen-vector";
        case GemmKernel::Eigen: return "eigen";
        case GemmKernel::UnpackedDot: return "unpacked-dot";
        case GemmKernel::UnpackedAxpy: return "unpacked-axpy";
    }
    return "?";
}

template <class T>
void gemm(T alpha, const ConstMatrixRef<T>& a, bool ta, const ConstMatrixRef<T>& b, bool tb, MatrixRef<T> c,
          bool accumulate) {
    const Index m = c.rows(), n = c.cols(), k = ta ? a.rows() : a.cols();
    eigen_assert((ta ? a.cols() : a.rows()) == m && (tb ? b.cols() : b.rows()) == k && (tb ? b.rows() : b.cols()) == n);
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate) c.setZero();
        return;
    }
    if constexpr (std::is_same_v<T, float>) {
        if (bf16_products()) {
            bf16_gemm(alpha, a, ta, b, tb, c, accumulate);
            return;
        }
    }
    // Matrix-vector shapes, outer products and tiny products: Eigen's own kernels allocate nothing.
    if (vector_shape(m, n, k)) {
        expression_gemm(alpha, a, ta, b, tb, c, accumulate);
        return;
    }
    const int threads = product_threads(m, n, k, product_thread_budget());
    if (threads <= 1) {
        serial_product(serial_kernel<T>(m, n, k, ta, tb), alpha, a, ta, b, tb, c, accumulate);
        return;
    }
    // Split the larger output dimension: every thread packs all of the other operand, so this
    // duplicates the smaller packing.
    const bool split_rows = m >= n;
    const Index extent = split_rows ? m : n, granule = split_rows ? Index{1} : kColumnGranule;
    // One kernel for every part, chosen for the longest: parts whose sizes straddle a boundary of the
    // selection rule would otherwise run different kernels and finish at different times (the wide
    // net's 1000 -> 1000 forward product at two threads ran Eigen's kernel on 512 columns and the dot
    // kernel on 488, and the second thread waited).
    const Index part = split_part_length(extent, threads, granule);
    const GemmKernel kernel = split_rows ? serial_kernel<T>(part, n, k, ta, tb) : serial_kernel<T>(m, part, k, ta, tb);
    split_between_threads(extent, threads, granule, [&](Index lo, Index len) {
        if (split_rows) {
            if (ta)
                serial_product<T>(kernel, alpha, a.middleCols(lo, len), ta, b, tb, c.middleRows(lo, len), accumulate);
            else
                serial_product<T>(kernel, alpha, a.middleRows(lo, len), ta, b, tb, c.middleRows(lo, len), accumulate);
        } else {
            if (tb)
                serial_product<T>(kernel, alpha, a, ta, b.middleRows(lo, len), tb, c.middleCols(lo, len), accumulate);
            else
                serial_product<T>(kernel, alpha, a, ta, b.middleCols(lo, len), tb, c.middleCols(lo, len), accumulate);
        }
    });
}

void set_zero_skipping(bool on) { zero_skipping.store(on, std::memory_order_relaxed); }

template <class T>
Index zero_block_width() {
#if RBP_UNPACKED_GEMM
    if (std::is_same_v<T, float> && zero_skipping.load(std::memory_order_relaxed)) return unpacked::kWidth;
#endif
    return 0;
}

template <class T>
Index zero_block_words(Index columns) {
    const Index width = zero_block_width<T>();
    return width == 0 ? 0 : (columns + 64 * width - 1) / (64 * width);
}

template <class T>
double mark_zero_blocks(const ConstMatrixRef<T>& x, [[maybe_unused]] std::uint64_t* masks) {
    const Index width = zero_block_width<T>();
    if (width == 0) throw std::invalid_argument("this build has no products that skip zero blocks");
    [[maybe_unused]] const Index words = zero_block_words<T>(x.cols());  // the unpacked kernels' marks only
    const Index cols = x.cols();
    Index nonzero = 0;
#if RBP_UNPACKED_GEMM
    if constexpr (std::is_same_v<T, float>) {
        for (Index i = 0; i < x.rows(); ++i) {
            const float* row = x.row(i).data();
            for (Index w = 0; w < words; ++w) {
                const Index first = w * 64 * width;
                masks[i * words + w] = unpacked::nonzero_groups(row + first, cols - first);
                nonzero += __builtin_popcountll(masks[i * words + w]);
            }
        }
    }
#endif
    const double blocks = static_cast<double>(x.rows()) * static_cast<double>((cols + width - 1) / width);
    return blocks > 0 ? 1.0 - static_cast<double>(nonzero) / blocks : 0.0;
}

template <class T>
void gemm_skipping_zeros_forward(const ConstMatrixRef<T>& x, const ZeroBlocks& zeros, const ConstMatrixRef<T>& w,
                                 MatrixRef<T> s, bool accumulate) {
#if RBP_UNPACKED_GEMM
    if constexpr (std::is_same_v<T, float>) {
        if (bf16_products()) return gemm<T>(T(1), x, false, w, true, s, accumulate);
        const Index m = x.rows(), n = w.rows(), k = x.cols();
        eigen_assert(w.cols() == k && s.rows() == m && s.cols() == n);
        // W's rows (the units, S's columns) between the threads, in the parts of the update below, so
        // that each thread reads only the rows of W it writes there (benchmarks/README.md, "Two threads
        // at batch 128"); in whole blocks of the dot kernel, so that every value of S comes from the
        // same block shape, and the same sums, as in one call over all the units.
        split_between_threads(n, first_layer_threads(m, n, k), unpacked::kDotColumns, [&](Index lo, Index len) {
            unpacked::gemm_nt(m, len, k, 1.0f, x.data(), x.outerStride(), w.row(lo).data(), w.outerStride(),
                              s.data() + lo, s.outerStride(), accumulate, {zeros.masks, zeros.stride});
        });
        return;
    }
#endif
    (void)zeros;
    gemm<T>(T(1), x, false, w, true, s, accumulate);
}

template <class T>
void gemm_skipping_zeros_update(T alpha, const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x,
                                const ZeroBlocks& zeros, MatrixRef<T> w) {
#if RBP_UNPACKED_GEMM
    if constexpr (std::is_same_v<T, float>) {
        if (bf16_products()) return gemm<T>(alpha, b, true, x, false, w, true);
        const Index m = w.rows(), n = w.cols(), k = x.rows();
        eigen_assert(b.rows() == k && b.cols() == m && x.cols() == n);
        // Rows of W (units) between the threads in the forward product's parts; every thread reads all
        // of X and its marks.
        split_between_threads(m, first_layer_threads(k, m, n), unpacked::kDotColumns, [&](Index lo, Index len) {
            unpacked::gemm_axpy(len, n, k, alpha, b.data() + lo, 1, b.outerStride(), x.data(), x.outerStride(),
                                w.row(lo).data(), w.outerStride(), true, {zeros.masks, zeros.stride});
        });
        return;
    }
#endif
    (void)zeros;
    gemm<T>(alpha, b, true, x, false, w, true);
}

void set_sparse_products(bool on) { sparse_products.store(on, std::memory_order_relaxed); }

template <class T>
bool sparse_products_available() {
#if RBP_UNPACKED_GEMM
    return std::is_same_v<T, float> && sparse_products.load(std::memory_order_relaxed);
#else
    return false;
#endif
}

Index sparse_weight_panels(Index units) { return (units + kSparsePanelUnits - 1) / kSparsePanelUnits; }

template <class T>
void to_sparse_weight(const ConstMatrixRef<T>& w, Matrix<T>& w_t) {
    const Index units = w.rows(), inputs = w.cols(), panels = sparse_weight_panels(units);
    w_t.resize(panels * inputs, kSparsePanelUnits);  // (no-op when it has this shape)
    for (Index p = 0; p < panels; ++p) {
        const Index first = p * kSparsePanelUnits, len = std::min(kSparsePanelUnits, units - first);
        auto panel = w_t.middleRows(p * inputs, inputs);
        panel.leftCols(len) = w.middleRows(first, len).transpose();
        panel.rightCols(kSparsePanelUnits - len).setZero();
    }
}

template <class T>
void from_sparse_weight(const Matrix<T>& w_t, MatrixRef<T> w) {
    const Index units = w.rows(), inputs = w.cols();
    for (Index p = 0; p < sparse_weight_panels(units); ++p) {
        const Index first = p * kSparsePanelUnits, len = std::min(kSparsePanelUnits, units - first);
        w.middleRows(first, len) = w_t.middleRows(p * inputs, inputs).leftCols(len).transpose();
    }
}

template <class T>
void compress_rows([[maybe_unused]] const ConstMatrixRef<T>& x, [[maybe_unused]] const Index* rows,
                   [[maybe_unused]] Index m, [[maybe_unused]] SparseRows<T>& out, [[maybe_unused]] int threads) {
#if RBP_UNPACKED_GEMM
    if constexpr (std::is_same_v<T, float>) {
        const Index k = x.cols();
        eigen_assert(k <= std::numeric_limits<std::int32_t>::max());
        const Index capacity = unpacked::sparse_row_capacity(k);
        constexpr Index group = unpacked::kSparseGroup;
        const Index groups = (m + group - 1) / group;
        if (out.values.size() < static_cast<std::size_t>(groups * group * capacity)) {  // once per batch size
            out.values.resize(static_cast<std::size_t>(groups * group * capacity));
            out.columns.resize(static_cast<std::size_t>(groups * capacity));
        }
        if (out.counts.size() < static_cast<std::size_t>(groups)) out.counts.resize(static_cast<std::size_t>(groups));
        out.rows = m;
        out.cols = k;
        out.capacity = capacity;
        split_between_threads(groups, threads, Index{1}, [&](Index lo, Index len) {
            for (Index q = lo; q < lo + len; ++q) {
                const float* group_rows[group];
                for (Index r = 0; r < group; ++r) {
                    const Index i = q * group + r;
                    group_rows[r] = i >= m ? nullptr : x.row(rows != nullptr ? rows[i] : i).data();
                }
                out.counts[static_cast<std::size_t>(q)] =
                    unpacked::compress_group(group_rows, k, out.values.data() + q * group * capacity, capacity,
                                             out.columns.data() + q * capacity);
            }
        });
        return;
    }
#endif
    throw std::invalid_argument("this build has no sparse products");
}

// The panels of `units` units between the first layer's threads, in the forward product and the update
// alike: each thread reads only the memory it writes, and no cache line holds two threads' weights.
// body(panel, its first unit, its units).
template <class Body>
void split_sparse_panels(Index m, Index units, Index k, const Body& body) {
    const Index panels = sparse_weight_panels(units);
    const int threads = std::min<int>(static_cast<int>(panels), first_layer_threads(m, units, k));
    split_between_threads(panels, threads, Index{1}, [&](Index lo, Index len) {
        for (Index p = lo; p < lo + len; ++p)
            body(p, p * kSparsePanelUnits, std::min(kSparsePanelUnits, units - p * kSparsePanelUnits));
    });
}

template <class T>
void gemm_sparse_forward([[maybe_unused]] const SparseRows<T>& x, [[maybe_unused]] const ConstMatrixRef<T>& w_t,
                         [[maybe_unused]] MatrixRef<T> s, [[maybe_unused]] bool accumulate) {
#if RBP_UNPACKED_GEMM
    if constexpr (std::is_same_v<T, float>) {
        const Index m = x.rows, units = s.cols(), k = x.cols;
        eigen_assert(s.rows() == m && w_t.rows() == sparse_weight_panels(units) * k && w_t.cols() == kSparsePanelUnits);
        split_sparse_panels(m, units, k, [&](Index p, Index first, Index len) {
            unpacked::sparse_forward(m, len, x.values.data(), x.columns.data(), x.counts.data(), x.capacity,
                                     w_t.row(p * k).data(), w_t.outerStride(), s.data() + first, s.outerStride(),
                                     accumulate);
        });
        return;
    }
#endif
    throw std::invalid_argument("this build has no sparse products");
}

template <class T>
void gemm_sparse_update([[maybe_unused]] T alpha, [[maybe_unused]] const ConstMatrixRef<T>& b,
                        [[maybe_unused]] const SparseRows<T>& x, [[maybe_unused]] MatrixRef<T> w_t) {
#if RBP_UNPACKED_GEMM
    if constexpr (std::is_same_v<T, float>) {
        const Index m = x.rows, units = b.cols(), k = x.cols;
        eigen_assert(b.rows() == m && w_t.rows() == sparse_weight_panels(units) * k && w_t.cols() == kSparsePanelUnits);
        split_sparse_panels(m, units, k, [&](Index p, Index first, Index len) {
            unpacked::sparse_update(m, len, alpha, b.data() + first, b.outerStride(), x.values.data(), x.columns.data(),
                                    x.counts.data(), x.capacity, w_t.row(p * k).data(), w_t.outerStride());
        });
        return;
    }
#endif
    throw std::invalid_argument("this build has no sparse products");
}

template bool sparse_products_available<float>();
template bool sparse_products_available<double>();
template void to_sparse_weight<float>(const ConstMatrixRef<float>&, Matrix<float>&);
template void to_sparse_weight<double>(const ConstMatrixRef<double>&, Matrix<double>&);
template void from_sparse_weight<float>(const Matrix<float>&, MatrixRef<float>);
template void from_sparse_weight<double>(const Matrix<double>&, MatrixRef<double>);
template void compress_rows<float>(const ConstMatrixRef<float>&, const Index*, Index, SparseRows<float>&, int);
template void compress_rows<double>(const ConstMatrixRef<double>&, const Index*, Index, SparseRows<double>&, int);
template void gemm_sparse_forward<float>(const SparseRows<float>&, const ConstMatrixRef<float>&, MatrixRef<float>,
                                         bool);
template void gemm_sparse_forward<double>(const SparseRows<double>&, const ConstMatrixRef<double>&, MatrixRef<double>,
                                          bool);
template void gemm_sparse_update<float>(float, const ConstMatrixRef<float>&, const SparseRows<float>&,
                                        MatrixRef<float>);
template void gemm_sparse_update<double>(double, const ConstMatrixRef<double>&, const SparseRows<double>&,
                                         MatrixRef<double>);

template Index zero_block_width<float>();
template Index zero_block_width<double>();
template Index zero_block_words<float>(Index);
template Index zero_block_words<double>(Index);
template double mark_zero_blocks<float>(const ConstMatrixRef<float>&, std::uint64_t*);
template double mark_zero_blocks<double>(const ConstMatrixRef<double>&, std::uint64_t*);
template void gemm_skipping_zeros_forward<float>(const ConstMatrixRef<float>&, const ZeroBlocks&,
                                                 const ConstMatrixRef<float>&, MatrixRef<float>, bool);
template void gemm_skipping_zeros_forward<double>(const ConstMatrixRef<double>&, const ZeroBlocks&,
                                                  const ConstMatrixRef<double>&, MatrixRef<double>, bool);
template void gemm_skipping_zeros_update<float>(float, const ConstMatrixRef<float>&, const ConstMatrixRef<float>&,
                                                const ZeroBlocks&, MatrixRef<float>);
template void gemm_skipping_zeros_update<double>(double, const ConstMatrixRef<double>&, const ConstMatrixRef<double>&,
                                                 const ZeroBlocks&, MatrixRef<double>);

template void gemm<float>(float, const ConstMatrixRef<float>&, bool, const ConstMatrixRef<float>&, bool,
                          MatrixRef<float>, bool);
template void gemm<double>(double, const ConstMatrixRef<double>&, bool, const ConstMatrixRef<double>&, bool,
                           MatrixRef<double>, bool);
template GemmKernel gemm_kernel<float>(Index, Index, Index, bool, bool);
template GemmKernel gemm_kernel<double>(Index, Index, Index, bool, bool);

}  // namespace rbp
