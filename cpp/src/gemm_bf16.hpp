// The bf16 products behind gemm<float>() inside a Bf16Products scope (private to the core).
#pragma once

#include "rbp/types.hpp"

namespace rbp {

// c = alpha op(a) op(b) (+ c) with a and b rounded to bfloat16 and the sums in float32 (gemm.hpp).
void bf16_gemm(float alpha, const ConstMatrixRef<float>& a, bool transpose_a, const ConstMatrixRef<float>& b,
               bool transpose_b, MatrixRef<float> c, bool accumulate);

}  // namespace rbp
