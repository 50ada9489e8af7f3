// Transfer functions of hidden layers and the output/loss pairs whose top error is exactly T - O.
#pragma once

#include "rbp/options.hpp"
#include "rbp/types.hpp"

namespace rbp {

// O = f(S) in place of `values` (which holds S on entry). When `derivative` is non-null it receives
// f'(S), computed from the same sweep so the forward pass never evaluates f twice.
template <class T>
void apply_activation(Activation activation, MatrixRef<T> values, MatrixRef<T>* derivative);

// Output non-linearity in place (softmax is row-wise and shifted by the row maximum).
template <class T>
void apply_output(Output output, MatrixRef<T> values);

// Sum over the rows of the per-example loss, computed from the pre-activations S^L for numerical
// stability (log-sum-exp, softplus) rather than from O.
template <class T>
double summed_loss(Output output, const ConstMatrixRef<T>& pre_activation, const ConstMatrixRef<T>& output_values,
                   const ConstMatrixRef<T>& targets);

}  // namespace rbp
