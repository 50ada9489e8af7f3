// Basic types shared by the whole core. The core never includes Python headers.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace rbp {

using Index = Eigen::Index;

// Row-major everywhere: a batch is (examples, features), exactly numpy's C order, and W^h is
// (n_h, n_{h-1}) as in the paper, so numpy buffers map without copies or transposes.
template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;

// Views accept any row-major block with unit inner stride (column blocks of a stacked matrix
// included), so callers hand in sub-matrices without copying.
template <class T>
using MatrixRef = Eigen::Ref<Matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstMatrixRef = Eigen::Ref<const Matrix<T>, 0, Eigen::OuterStride<>>;

// Errors in user-supplied configuration or data; the bindings turn this into ValueError.
using std::invalid_argument;

inline void require(bool condition, const std::string& message) {
    if (!condition) throw std::invalid_argument(message);
}

}  // namespace rbp
