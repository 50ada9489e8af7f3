// Matrix products of the core: C = alpha * op(A) op(B) (+ C), on row-major views.
//
// Eigen's expression `c.noalias() = a * b.transpose()` allocates its packing buffers on every call
// once they exceed 128 KiB (EIGEN_STACK_ALLOCATION_LIMIT); glibc then grows and trims the heap on
// each product, and the page faults cost more than the product itself for the MNIST net's first
// layer at batch 128 (about 2x). gemm() calls the same Eigen kernels with packing buffers that
// live as long as the thread, and splits large products between threads by the policy of
// parallel.hpp. Vector shapes (a batch of one) go to Eigen's matrix-vector kernels. In the AVX-512
// and AVX2 builds, single-precision products of the sizes a training step has take kernels that read
// the operands in place instead, where they were measured faster (src/unpacked_gemm.hpp, gemm.cpp).
#pragma once

#include "rbp/types.hpp"

#include <cstdint>
#include <vector>

namespace rbp {

// c = alpha * op(a) op(b) when `accumulate` is false, c += alpha * op(a) op(b) when true, where
// op(x) is x or its transpose. Shapes: op(a) (m x k), op(b) (k x n), c (m x n); c must not
// overlap a or b. Uses up to product_thread_budget() threads (see parallel.hpp).
template <class T>
void gemm(T alpha, const ConstMatrixRef<T>& a, bool transpose_a, const ConstMatrixRef<T>& b, bool transpose_b,
          MatrixRef<T> c, bool accumulate);

// bf16 products (rbp_native.Trainer(precision="bf16")). While a Bf16Products scope is open on a thread,
// that thread's single-precision gemm() calls (and the products that skip zero blocks) round both
// operands to bfloat16 (round to nearest even; 8 significant bits; subnormal values, below 2^-126, to
// zero, as the bf16 instructions read them) and sum their products in float32:
// each product of two bf16 values is exact in float32, so only the rounding of the operands and the
// order of the float32 sums differ from a float32 product. Where the build has oneDNN they run on its
// bf16 matmul (about twice the float32 rate on CPUs with AVX512-BF16 or AMX, benchmarks/README.md);
// otherwise, or after set_bf16_implementation(Portable), the rounded operands go through the float32
// kernels (same products, slower). Double precision ignores the scope.
class Bf16Products {
public:
    explicit Bf16Products(bool on);
    ~Bf16Products();
    Bf16Products(const Bf16Products&) = delete;
    Bf16Products& operator=(const Bf16Products&) = delete;

private:
    bool saved_;
};
bool bf16_products();  // whether a scope that turns them on is open on this thread
// Reuse of bf16 operands. Rounding an operand is a pass over it at every product that reads it; a
// weight matrix is read twice per step by bp and a fixed feedback matrix at every step. Inside a scope
// that turns bf16 products on, remember_bf16_operand(m) lets this thread's later products reuse m's
// rounded copy (made at its first use) until forget_bf16_operands(), or, with `constant`, until
// forget_bf16_operands(true) or the outermost bf16 scope closes; the caller promises that m's values
// do not change meanwhile. Outside such a scope both do nothing, and so does remembering a matrix of
// more than 2^18 values (its copy would not stay in cache; rounding it afresh was faster).
void remember_bf16_operand(const ConstMatrixRef<float>& m, bool constant);
void forget_bf16_operands(bool constant_too = false);
// For the tests: remembering on or off (process-wide; on by default), and how many operands this
// thread has rounded so far.
void set_bf16_operand_reuse(bool on);
std::int64_t bf16_operand_roundings();
enum class Bf16Implementation { Auto, Portable };
// Process-wide, for the tests that compare the two paths; not meant to change while products run.
void set_bf16_implementation(Bf16Implementation implementation);
// Whether bf16 products run on oneDNN (this build has it and the implementation is Auto).
bool bf16_onednn();
// Rounds a float to the nearest bfloat16 as the bf16 products do (ties to even; NaN stays NaN;
// subnormals to zero).
float round_to_bf16(float x);

// The kernels a product can run on.
enum class GemmKernel {
    None,          // nothing to multiply (an empty dimension)
    EigenVector,   // Eigen's matrix-vector and tiny-product kernels
    Eigen,         // Eigen's packed GEMM kernel
    UnpackedDot,   // unpacked, C = A B^T as dot products (AVX-512 and AVX2, float)
    UnpackedAxpy,  // unpacked, C = op(A) B as rows of B scaled and added (AVX-512 and AVX2, float)
};
const char* to_string(GemmKernel kernel);

// The kernel gemm<T>() uses for a product of these sizes on one thread (a product split between
// threads runs the kernel chosen this way for its longest part on every part).
template <class T>
GemmKernel gemm_kernel(Index m, Index n, Index k, bool transpose_a, bool transpose_b);

// Whether this build has the unpacked single-precision kernels (AVX-512 and AVX2 builds).
bool unpacked_gemm_available();
// When products take the unpacked kernels: where they beat Eigen's (the default), never, or always
// when one exists for the orientation (A B^T, A B, A^T B). Never and Always are for the benchmarks
// and tests that compare the kernel families. Process-wide; not meant to change while products run.
enum class UnpackedGemm { Never, WhereFaster, Always };
void set_unpacked_gemm(UnpackedGemm use);

// Which CPU's measurements the AVX-512 selection rule follows. On the 2-core Xeon the rule was tuned on,
// the unpacked dot kernel lost to Eigen's above ~64M multiply-accumulates; on an AMD Zen 4 (family 19h
// with AVX-512) it wins up to batches of 768 (benchmarks/README.md, "What was tried"). Our reading: the
// dot kernel re-reads one operand from L2 for every block of outputs, which keeps up with a Zen 4's
// FMAs (each 512-bit FMA in two 256-bit halves) and not with a Xeon's two full-width FMAs per cycle.
// Detect (the default) takes Zen4 on a Zen 4 and Generic on every other CPU; the others force one, for
// the tests and benchmarks. Process-wide; not meant to change while products run. The kernels' sums
// differ, so the weights a run computes depend on the profile (as on the instruction-set variant):
// bit-identical for the same seed, thread count and CPU.
enum class GemmProfile { Detect, Generic, Zen4 };
void set_gemm_profile(GemmProfile profile);
// The profile in force (Generic or Zen4).
GemmProfile gemm_profile();

// Cache blocking of Eigen's packed kernel. Eigen splits a product's depth into passes over C once it
// exceeds a bound derived from the L1 size (944 for single precision with AVX-512 and a 48 KiB L1d), and
// then packs all of the rows of the split block at once (for a 1000-wide layer, 2 MB for a 2 MB L2). On
// the 2-core Xeon (48 KiB L1d, 2 MiB L2) the forward and channel products of 1000-unit layers ran 8-35%
// faster with the whole depth in one pass and Eigen's own row blocking for an unsplit depth
// (benchmarks/README.md, "What was tried"). WholeDepth: where Eigen would split the depth and the packed
// right-hand block (depth x columns) fits in half the L2, keep the depth whole. Detect (the default)
// takes WholeDepth in the AVX-512 build on CPUs with at least 48 KiB of L1d (measured on the Xeon only;
// a Zen 4 has 32 KiB and keeps Eigen's), Eigen elsewhere and in the other builds (not measured there);
// the others force one, for the tests and benchmarks.
// Process-wide; not meant to change while products run; sums and so weights depend on it, as on the
// profile.
enum class GemmBlocking { Detect, Eigen, WholeDepth };
void set_gemm_blocking(GemmBlocking blocking);
// The blocking in force (Eigen or WholeDepth).
GemmBlocking gemm_blocking();

// Products that skip an operand's all-zero blocks: the first layer's forward product S = X W^T and
// update W += s B^T X read only the parts of the input batch that hold a non-zero (MNIST's blank
// margins: about 40% of each image's 16-pixel blocks). A skipped term is an exact zero, so the sums
// equal those of the unpacked kernels without skipping (bit for bit, up to the sign of a zero sum);
// only the AVX-512 and AVX2 single-precision builds have them.
//
// The marks: bit b of word w of row i (masks[i * stride + w]) is set when columns
// [(64 w + b) width, (64 w + b + 1) width) of row i hold a non-zero, width = zero_block_width<T>().
struct ZeroBlocks {
    const std::uint64_t* masks = nullptr;
    Index stride = 0;  // words per row: zero_block_words<T>(columns)
};
// Columns per block (16 with AVX-512, 8 with AVX2); 0 when this build has no such kernels for T or
// skipping is switched off (set_zero_skipping).
template <class T>
Index zero_block_width();
template <class T>
Index zero_block_words(Index columns);
// Marks x's rows into `masks` (x.rows() * zero_block_words<T>(x.cols()) words); returns the fraction
// of blocks that are all zero. Requires zero_block_width<T>() > 0.
template <class T>
double mark_zero_blocks(const ConstMatrixRef<T>& x, std::uint64_t* masks);
// s (+)= x w^T and w += alpha b^T x, where `zeros` marks x's rows.
template <class T>
void gemm_skipping_zeros_forward(const ConstMatrixRef<T>& x, const ZeroBlocks& zeros, const ConstMatrixRef<T>& w,
                                 MatrixRef<T> s, bool accumulate);
template <class T>
void gemm_skipping_zeros_update(T alpha, const ConstMatrixRef<T>& b, const ConstMatrixRef<T>& x,
                                const ZeroBlocks& zeros, MatrixRef<T> w);
// Process-wide switch (on by default) for the tests and benchmarks that compare the two paths.
void set_zero_skipping(bool on);

// Products over the first layer's input batch without its zeros (SparseRows): their cost follows the
// non-zeros (MNIST: about 19% of the pixels) instead of the input's width. The weights are read and
// written transposed, in panels: panel p holds units [64 p, 64 p + 64) as an (inputs x 64) row-major
// block (zeros past the last unit), so that each non-zero input scales one contiguous row of a panel,
// and threads that split the panels share no cache line of them. Every value of S and of the weights
// sums its terms in a fixed order (S: bias, then the row's non-zeros by column; weights: the examples in
// order), the same on any number of threads. Only the AVX-512 and AVX2 single-precision builds have
// them (sparse_products_available).
// The rows are stored in pairs that share their columns: the columns where either row is non-zero, and
// both rows' values there (zeros included), so that a weight row read for one column serves both
// examples (the layout: src/unpacked_gemm.hpp).
template <class T>
struct SparseRows {
    std::vector<T> values;
    std::vector<std::int32_t> columns;
    std::vector<Index> counts;  // columns per group
    Index rows = 0, cols = 0;
    Index capacity = 0;  // a group's columns, and each of its rows' values, start at multiples of it
};
template <class T>
bool sparse_products_available();
// Process-wide switch (on by default) for the tests and benchmarks that compare the two paths.
void set_sparse_products(bool on);
// The transposed, panelled weights: units per panel, panels for `units` units, and W (units x inputs)
// into that layout (w_t: panels * inputs rows of kSparsePanelUnits) and back.
constexpr Index kSparsePanelUnits = 64;
Index sparse_weight_panels(Index units);
template <class T>
void to_sparse_weight(const ConstMatrixRef<T>& w, Matrix<T>& w_t);
template <class T>
void from_sparse_weight(const Matrix<T>& w_t, MatrixRef<T> w);
// Fills `out` with the non-zeros of x's rows rows[0..m) (null: its first m), the groups split between
// `threads` threads.
template <class T>
void compress_rows(const ConstMatrixRef<T>& x, const Index* rows, Index m, SparseRows<T>& out, int threads);
// s (+)= x W^T with W^T from the panels w_t, units = s.cols(), on up to first_layer_threads() threads.
template <class T>
void gemm_sparse_forward(const SparseRows<T>& x, const ConstMatrixRef<T>& w_t, MatrixRef<T> s, bool accumulate);
// W^T += alpha x^T b in the panels w_t, units = b.cols().
template <class T>
void gemm_sparse_update(T alpha, const ConstMatrixRef<T>& b, const SparseRows<T>& x, MatrixRef<T> w_t);

}  // namespace rbp
