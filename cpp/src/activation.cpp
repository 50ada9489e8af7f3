#include "rbp/activation.hpp"

#include "rbp/parallel.hpp"

#include <cmath>

namespace rbp {

namespace {

// The elementwise work runs over one flat array whenever the rows are contiguous (the trainer's
// workspaces always are): Eigen then vectorises the whole block, where row by row the tail of every
// row (100 = 6 x 16 + 4 for the MNIST net) goes through the scalar tanh/exp, and those tails cost
// as much as the packets (measured: tanh and f' of 128 x 100 values 2-3x faster flat).
template <class T>
bool contiguous(const MatrixRef<T>& m) {
    return m.rows() <= 1 || m.outerStride() == m.cols();
}

template <class T>
Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> flat(MatrixRef<T>& m) {
    return {m.data(), m.size()};
}

// values = f(values) and, when given, derivative = f'(values) taken from the new values.
template <class V, class D>
void activate(Activation activation, V& v, D* derivative) {
    using T = typename V::Scalar;
    switch (activation) {
        case Activation::Tanh:
            v = v.tanh();
            if (derivative) *derivative = T(1) - v.square();
            break;
        case Activation::Logistic:
            v = v.logistic();
            if (derivative) *derivative = v * (T(1) - v);
            break;
        case Activation::Relu:
            if (derivative) *derivative = (v > T(0)).template cast<T>();
            v = v.max(T(0));
            break;
        case Activation::Linear:
            if (derivative) derivative->setOnes();
            break;
    }
}

template <class T>
void activate_rows(Activation activation, MatrixRef<T> values, MatrixRef<T>* derivative) {
    if (contiguous(values) && (!derivative || contiguous(*derivative))) {
        auto v = flat(values);
        if (derivative) {
            auto d = flat(*derivative);
            activate(activation, v, &d);
        } else {
            activate(activation, v, static_cast<decltype(v)*>(nullptr));
        }
        return;
    }
    auto v = values.array();
    if (derivative) {
        auto d = derivative->array();
        activate(activation, v, &d);
    } else {
        activate(activation, v, static_cast<decltype(v)*>(nullptr));
    }
}

}  // namespace

template <class T>
void apply_activation(Activation activation, MatrixRef<T> values, MatrixRef<T>* derivative) {
    for_row_blocks(values.rows(), values.cols(), [&](Index first, Index end) {
        MatrixRef<T> block = values.middleRows(first, end - first);
        if (derivative) {
            MatrixRef<T> d = derivative->middleRows(first, end - first);
            activate_rows<T>(activation, block, &d);
        } else {
            activate_rows<T>(activation, block, nullptr);
        }
    });
}

template <class T>
void apply_output(Output output, MatrixRef<T> values) {
    switch (output) {
        case Output::Softmax:
            // Shift each row by its maximum, exponentiate the whole block at once, normalise each row.
            for (Index r = 0; r < values.rows(); ++r) values.row(r).array() -= values.row(r).maxCoeff();
            if (contiguous(values))
                flat(values) = flat(values).exp();
            else
                values.array() = values.array().exp();
            for (Index r = 0; r < values.rows(); ++r) values.row(r) /= values.row(r).sum();
            break;
        case Output::Logistic:
            if (contiguous(values))
                flat(values) = flat(values).logistic();
            else
                values.array() = values.array().logistic();
            break;
        case Output::Linear: break;
    }
}

template <class T>
double summed_loss(Output output, const ConstMatrixRef<T>& s, const ConstMatrixRef<T>& o, const ConstMatrixRef<T>& t) {
    double total = 0.0;
    for (Index r = 0; r < s.rows(); ++r) {
        switch (output) {
            case Output::Softmax: {
                // -sum_k T_k log softmax_k = sum_k T_k (logsumexp(S) - S_k)
                const double shift = static_cast<double>(s.row(r).maxCoeff());
                double sum_exp = 0.0;
                for (Index c = 0; c < s.cols(); ++c) sum_exp += std::exp(static_cast<double>(s(r, c)) - shift);
                const double lse = shift + std::log(sum_exp);
                for (Index c = 0; c < s.cols(); ++c) total += static_cast<double>(t(r, c)) * (lse - s(r, c));
                break;
            }
            case Output::Logistic:
                // -[T log O + (1-T) log(1-O)] = softplus(S) - T S
                for (Index c = 0; c < s.cols(); ++c) {
                    const double x = s(r, c);
                    const double softplus = x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
                    total += softplus - static_cast<double>(t(r, c)) * x;
                }
                break;
            case Output::Linear:
                for (Index c = 0; c < s.cols(); ++c) {
                    const double diff = static_cast<double>(t(r, c)) - static_cast<double>(o(r, c));
                    total += 0.5 * diff * diff;
                }
                break;
        }
    }
    return total;
}

#define RBP_INSTANTIATE(T)                                                                     \
    template void apply_activation<T>(Activation, MatrixRef<T>, MatrixRef<T>*);                \
    template void apply_output<T>(Output, MatrixRef<T>);                                       \
    template double summed_loss<T>(Output, const ConstMatrixRef<T>&, const ConstMatrixRef<T>&, \
                                   const ConstMatrixRef<T>&);
RBP_INSTANTIATE(float)
RBP_INSTANTIATE(double)
#undef RBP_INSTANTIATE

}  // namespace rbp
