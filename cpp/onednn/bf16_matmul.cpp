// The bf16 products through oneDNN's matmul, in the plugin: the core rounds the operands to bfloat16
// (cpp/src/gemm_bf16.cpp) and calls this with their bits.
#include "onednn_common.hpp"

#include <memory>
#include <unordered_map>

namespace rbp::onednn {
namespace {

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

// Everything per thread: the stream and the primitives.
struct Bf16State {
    dnnl::stream stream{cpu_engine()};
    std::unordered_map<MatmulKey, std::unique_ptr<Matmul>, MatmulKeyHash> matmuls;
};
Bf16State& state() {
    thread_local Bf16State s;
    return s;
}

Matmul& matmul_for(const MatmulKey& key) {
    std::unique_ptr<Matmul>& entry = state().matmuls[key];
    if (entry) return *entry;
    const dnnl::engine& engine = cpu_engine();
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
    auto made = std::make_unique<Matmul>();
    made->primitive = dnnl::matmul(pd);
    made->a = memory(a_desc, engine, DNNL_MEMORY_NONE);
    made->b = memory(b_desc, engine, DNNL_MEMORY_NONE);
    made->c = memory(c_desc, engine, DNNL_MEMORY_NONE);
    made->scale = memory(memory::desc({1}, memory::data_type::f32, memory::dims{1}), engine, DNNL_MEMORY_NONE);
    made->args = {{DNNL_ARG_SRC, made->a},
                  {DNNL_ARG_WEIGHTS, made->b},
                  {DNNL_ARG_DST, made->c},
                  {DNNL_ARG_ATTR_SCALES | DNNL_ARG_WEIGHTS, made->scale}};
    entry = std::move(made);
    return *entry;
}

}  // namespace

void bf16_matmul(float alpha, const std::uint16_t* a, bool transpose_a, const std::uint16_t* b, bool transpose_b,
                 float* c, Index m, Index n, Index k, Index ldc, bool accumulate, int threads) {
    Bf16State& s = state();
    const OmpThreads scope(threads);
    Matmul& mm = matmul_for({m, n, k, ldc, transpose_a, transpose_b, accumulate, threads});
    // oneDNN takes non-const handles; the primitive only reads its source and weights.
    mm.a.set_data_handle(const_cast<std::uint16_t*>(a));
    mm.b.set_data_handle(const_cast<std::uint16_t*>(b));
    mm.c.set_data_handle(c);
    mm.scale.set_data_handle(&alpha);
    mm.primitive.execute(s.stream, mm.args);
    s.stream.wait();
}

}  // namespace rbp::onednn
