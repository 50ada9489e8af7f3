// The core's matrix product, exposed for the tests that check it against numpy on every shape class
// (edges, strides, transposes, both kernel families). Not part of the package's API.
#include "arrays.hpp"

#include "rbp/conv.hpp"
#include "rbp/gemm.hpp"
#include "rbp/parallel.hpp"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;
using namespace rbp;

namespace {

// A view of a 2-D array of dtype T with unit column stride and any row stride (numpy slices of
// columns included); `writable` for the result.
template <class T>
Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>> strided_view(const py::array& a, const char* what, bool writable) {
    if (!a.dtype().is(py::dtype::of<T>()))
        throw py::type_error(std::string(what) + " must have dtype " + bindings::scalar_name<T>() + ", got " +
                             bindings::dtype_name(a));
    if (a.ndim() != 2) throw std::invalid_argument(std::string(what) + " must be 2-dimensional");
    const auto item = static_cast<py::ssize_t>(sizeof(T));
    const py::ssize_t rows = a.shape(0), cols = a.shape(1);
    if ((cols > 1 && a.strides(1) != item) || a.strides(0) % item != 0 || (rows > 1 && a.strides(0) < cols * item))
        throw std::invalid_argument(std::string(what) + " must have unit column stride and non-overlapping rows");
    if (writable && !a.writeable()) throw std::invalid_argument(std::string(what) + " must be writable");
    const Index stride = rows > 1 ? static_cast<Index>(a.strides(0) / item) : static_cast<Index>(cols);
    return {static_cast<T*>(const_cast<void*>(a.data())), static_cast<Index>(rows), static_cast<Index>(cols),
            Eigen::OuterStride<>(std::max<Index>(stride, 1))};
}

template <class T>
bool overlaps(const Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>& x,
              const Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>& y) {
    if (x.size() == 0 || y.size() == 0) return false;
    const auto begin = [](const auto& m) { return reinterpret_cast<std::uintptr_t>(m.data()); };
    const auto end = [](const auto& m) {
        return reinterpret_cast<std::uintptr_t>(m.data() + (m.rows() - 1) * m.outerStride() + m.cols());
    };
    return begin(x) < end(y) && begin(y) < end(x);
}

template <class T>
void product(double alpha, const py::array& a, bool transpose_a, const py::array& b, bool transpose_b, py::array& c,
             bool accumulate, int threads) {
    auto va = strided_view<T>(a, "a", false);
    auto vb = strided_view<T>(b, "b", false);
    auto vc = strided_view<T>(c, "c", true);
    const Index m = transpose_a ? va.cols() : va.rows(), k = transpose_a ? va.rows() : va.cols();
    const Index kb = transpose_b ? vb.cols() : vb.rows(), n = transpose_b ? vb.rows() : vb.cols();
    if (k != kb || vc.rows() != m || vc.cols() != n)
        throw std::invalid_argument("shapes do not match: op(a) is " + std::to_string(m) + "x" + std::to_string(k) +
                                    ", op(b) " + std::to_string(kb) + "x" + std::to_string(n) + ", c " +
                                    std::to_string(vc.rows()) + "x" + std::to_string(vc.cols()));
    if (overlaps(vc, va) || overlaps(vc, vb)) throw std::invalid_argument("c must not overlap a or b");
    if (threads < 1) throw std::invalid_argument("threads must be at least 1");
    py::gil_scoped_release release;
    const ThreadBudget budget(threads);
    gemm<T>(static_cast<T>(alpha), va, transpose_a, vb, transpose_b, vc, accumulate);
}

// Marks x's zero blocks and runs one of the products that skip them (w += alpha b^T x when `update`,
// else out (+)= x w^T); returns the fraction of zero blocks.
double skipping_zeros(double alpha, const py::array& b, const py::array& x, const py::array& w, py::array& out,
                      bool update, bool accumulate, int threads) {
    if (zero_block_width<float>() == 0) throw std::invalid_argument("this build has no products that skip zero blocks");
    auto vb = strided_view<float>(b, "b", false);
    auto vx = strided_view<float>(x, "x", false);
    auto vw = strided_view<float>(w, "w", false);
    auto vo = strided_view<float>(out, "out", true);
    const bool shapes = update ? vb.rows() == vx.rows() && vo.rows() == vb.cols() && vo.cols() == vx.cols()
                               : vw.cols() == vx.cols() && vo.rows() == vx.rows() && vo.cols() == vw.rows();
    if (!shapes) throw std::invalid_argument("shapes do not match");
    if (overlaps(vo, vx) || (update ? overlaps(vo, vb) : overlaps(vo, vw)))
        throw std::invalid_argument("the result must not overlap the operands");
    if (threads < 1) throw std::invalid_argument("threads must be at least 1");
    const Index words = zero_block_words<float>(vx.cols());
    std::vector<std::uint64_t> marks(static_cast<std::size_t>(std::max<Index>(1, vx.rows() * words)));
    py::gil_scoped_release release;
    const double zero = mark_zero_blocks<float>(vx, marks.data());
    const ZeroBlocks zeros{marks.data(), words};
    const ThreadBudget budget(threads);
    if (update)
        gemm_skipping_zeros_update<float>(static_cast<float>(alpha), vb, vx, zeros, vo);
    else
        gemm_skipping_zeros_forward<float>(vx, zeros, vw, vo, accumulate);
    return zero;
}

// The setting a test-only setter's `name` stands for; an unknown name raises ValueError listing every
// accepted one ("use must be 'never', 'where-faster' or 'always', got 'x'").
template <class E>
E named_setting(const char* what, const std::string& name, std::initializer_list<std::pair<const char*, E>> choices) {
    std::string accepted;
    std::size_t i = 0;
    for (const auto& [text, value] : choices) {
        if (name == text) return value;
        accepted += std::string(i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + "'" + text + "'";
        ++i;
    }
    throw std::invalid_argument(std::string(what) + " must be " + accepted + ", got '" + name + "'");
}

}  // namespace

void register_products(py::module_& m) {
    m.def(
        "_gemm",
        [](double alpha, const py::array& a, bool transpose_a, const py::array& b, bool transpose_b, py::array c,
           bool accumulate, int threads, bool bf16) {
            const Bf16Products scope(bf16);
            if (c.dtype().is(py::dtype::of<float>()))
                product<float>(alpha, a, transpose_a, b, transpose_b, c, accumulate, threads);
            else
                product<double>(alpha, a, transpose_a, b, transpose_b, c, accumulate, threads);
        },
        py::arg("alpha"), py::arg("a"), py::arg("transpose_a"), py::arg("b"), py::arg("transpose_b"), py::arg("c"),
        py::arg("accumulate"), py::arg("threads") = 1, py::arg("bf16") = false,
        "c = alpha op(a) op(b) (+ c) through the core's product on up to `threads` threads; bf16: with the operands "
        "rounded to bfloat16 (float32 only; for tests).");
    m.def(
        "_gemm_kernel",
        [](Index m, Index n, Index k, bool transpose_a, bool transpose_b, bool single) {
            if (m < 0 || n < 0 || k < 0) throw std::invalid_argument("sizes must be non-negative");
            return std::string(to_string(single ? gemm_kernel<float>(m, n, k, transpose_a, transpose_b)
                                                : gemm_kernel<double>(m, n, k, transpose_a, transpose_b)));
        },
        py::arg("m"), py::arg("n"), py::arg("k"), py::arg("transpose_a"), py::arg("transpose_b"),
        py::arg("single") = true, "The kernel a one-thread product of these sizes runs on (for tests).");
    m.def("_unpacked_gemm_available", &unpacked_gemm_available);
    m.def(
        "_skipping_zeros_forward",
        [](const py::array& x, const py::array& w, py::array s, bool accumulate, int threads) {
            return skipping_zeros(1.0, x, x, w, s, false, accumulate, threads);
        },
        py::arg("x"), py::arg("w"), py::arg("s"), py::arg("accumulate"), py::arg("threads") = 1,
        "s (+)= x w^T skipping x's zero blocks (float32; for tests). Returns the fraction of zero blocks.");
    m.def(
        "_skipping_zeros_update",
        [](double alpha, const py::array& b, const py::array& x, py::array w, int threads) {
            return skipping_zeros(alpha, b, x, w, w, true, true, threads);
        },
        py::arg("alpha"), py::arg("b"), py::arg("x"), py::arg("w"), py::arg("threads") = 1,
        "w += alpha b^T x skipping x's zero blocks (float32; for tests). Returns the fraction of zero blocks.");
    m.def("_set_zero_skipping", &set_zero_skipping, py::arg("on"),
          "Whether the first layer skips the input's all-zero blocks (for tests and benchmarks).");
    m.def("_set_sparse_products", &set_sparse_products, py::arg("on"),
          "Whether the trainer may run the first layer on the input's non-zeros (for tests and benchmarks).");
    m.def(
        "_sparse_products_available",
        [](bool single) { return single ? sparse_products_available<float>() : sparse_products_available<double>(); },
        py::arg("single") = true, "Whether this build has the sparse first-layer products (and they are on).");
    m.def(
        "_zero_block_width",
        [](bool single) { return single ? zero_block_width<float>() : zero_block_width<double>(); },
        py::arg("single") = true, "Columns per block the zero-skipping products mark (0: none in this build).");
    m.def(
        "_set_unpacked_gemm",
        [](const std::string& use) {
            set_unpacked_gemm(named_setting<UnpackedGemm>("use", use,
                                                          {{"never", UnpackedGemm::Never},
                                                           {"where-faster", UnpackedGemm::WhereFaster},
                                                           {"always", UnpackedGemm::Always}}));
        },
        py::arg("use"), "When products take the unpacked kernels (for tests).");
    m.def(
        "_set_gemm_profile",
        [](const std::string& profile) {
            set_gemm_profile(named_setting<GemmProfile>(
                "profile", profile,
                {{"detect", GemmProfile::Detect}, {"generic", GemmProfile::Generic}, {"zen4", GemmProfile::Zen4}}));
        },
        py::arg("profile"), "Which CPU's measurements the AVX-512 selection rule follows (for tests and benchmarks).");
    m.def(
        "_gemm_profile", [] { return std::string(gemm_profile() == GemmProfile::Zen4 ? "zen4" : "generic"); },
        "The CPU profile the AVX-512 selection rule follows: 'zen4' on an AMD Zen 4, 'generic' elsewhere.");
    m.def(
        "_set_gemm_blocking",
        [](const std::string& blocking) {
            set_gemm_blocking(named_setting<GemmBlocking>("blocking", blocking,
                                                          {{"detect", GemmBlocking::Detect},
                                                           {"eigen", GemmBlocking::Eigen},
                                                           {"whole-depth", GemmBlocking::WholeDepth}}));
        },
        py::arg("blocking"), "The cache blocking of Eigen's packed kernel (for tests and benchmarks).");
    m.def(
        "_gemm_blocking",
        [] { return std::string(gemm_blocking() == GemmBlocking::WholeDepth ? "whole-depth" : "eigen"); },
        "The cache blocking in force: 'whole-depth' in the AVX-512 build on CPUs with at least 48 KiB of L1d, "
        "'eigen' elsewhere.");
    m.def(
        "_set_min_macs_per_thread",
        [](double macs) {
            if (!(macs > 0)) throw std::invalid_argument("macs must be positive, got " + std::to_string(macs));
            return min_macs_per_thread().exchange(macs);
        },
        py::arg("macs"),
        "Multiply-accumulates per thread before a product is split (for benchmarks). Returns the previous value.");
    m.def(
        "_set_min_elements_per_thread",
        [](Index elements) {
            if (elements < 1) throw std::invalid_argument("elements must be positive, got " + std::to_string(elements));
            return min_elements_per_thread().exchange(elements);
        },
        py::arg("elements"),
        "Values per thread before elementwise work is split (for benchmarks and tests). Returns the previous value.");
    m.def(
        "_split_parts",
        [](Index extent, int threads, Index granule) {
            if (extent < 0 || threads < 1 || granule < 1)
                throw std::invalid_argument("extent must be non-negative, threads and granule positive");
            std::vector<Index> lengths;
            for (int t = 0; t < threads; ++t)
                lengths.push_back(split_boundary(extent, threads, granule, t + 1) -
                                  split_boundary(extent, threads, granule, t));
            return py::make_tuple(lengths, split_part_length(extent, threads, granule));
        },
        py::arg("extent"), py::arg("threads"), py::arg("granule"),
        "The lengths of the parts split_between_threads gives each thread, and the longest (for tests).");
    m.def(
        "_set_bf16_implementation",
        [](const std::string& name) {
            set_bf16_implementation(named_setting<Bf16Implementation>(
                "implementation", name,
                {{"auto", Bf16Implementation::Auto}, {"portable", Bf16Implementation::Portable}}));
        },
        py::arg("name"),
        "Where bf16 products run: oneDNN when built with it ('auto'), or the float32 kernels (for tests).");
    m.def("_bf16_onednn", &bf16_onednn, "Whether bf16 products run on oneDNN.");
    m.def("_set_bf16_operand_reuse", &set_bf16_operand_reuse, py::arg("on"),
          "Whether bf16 steps reuse the rounded weights and fixed feedback (for tests).");
    m.def("_bf16_operand_roundings", &bf16_operand_roundings,
          "Operands the bf16 products have rounded on this thread so far (for tests).");
    m.def("_onednn_available", &onednn_available, "Whether this build runs float32 convolutions on oneDNN.");
    m.def(
        "_set_conv_implementation",
        [](const std::string& name) {
            if (name == "auto")
                set_conv_implementation(ConvImplementation::Auto);
            else if (name == "eigen")
                set_conv_implementation(ConvImplementation::Eigen);
            else if (name == "onednn")
                set_conv_implementation(ConvImplementation::OneDnn);
            else
                throw std::invalid_argument("implementation must be 'auto', 'eigen' or 'onednn', got '" + name + "'");
        },
        py::arg("name"), "Which code runs the float32 convolutions (for tests and benchmarks).");
    m.def("_conv_implementation", []() {
        switch (conv_implementation()) {
            case ConvImplementation::Eigen: return std::string("eigen");
            case ConvImplementation::OneDnn: return std::string("onednn");
            default: return std::string("auto");
        }
    });
}
