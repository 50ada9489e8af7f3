// The low-bit quantiser of the paper's section 5: Q(x) = clip(D * round(x / D), -alpha, alpha),
// D = alpha * 2^(1 - bits).
#pragma once

#include "rbp/options.hpp"
#include "rbp/random.hpp"
#include "rbp/types.hpp"

#include <cmath>

namespace rbp {

struct Quantizer {
    int bits = 8;
    double alpha = 0.0;  // set by resolved_trainer_spec: quantize_alpha or the mode's default
    Rounding rounding = Rounding::Nearest;

    double step() const { return alpha * std::ldexp(1.0, 1 - bits); }

    // Round half to even (std::nearbyint in the default rounding mode), then clip.
    template <class T>
    T nearest(T x, T inv_step, T step_, T a) const {
        const T q = std::nearbyint(x * inv_step) * step_;
        return q < -a ? -a : (q > a ? a : q);
    }

    // Stochastic rounding: D * floor(x / D + u), u ~ U[0, 1); unbiased inside the range.
    template <class T>
    T stochastic(T x, double u, T inv_step, T step_, T a) const {
        const T q = std::floor(x * inv_step + static_cast<T>(u)) * step_;
        return q < -a ? -a : (q > a ? a : q);
    }

    // Quantises every entry of m in place; `rng` supplies u for stochastic rounding.
    template <class Derived>
    void apply(Eigen::MatrixBase<Derived>& m, Rng& rng) const {
        using T = typename Derived::Scalar;
        const T s = static_cast<T>(step());
        const T inv = T(1) / s;
        const T a = static_cast<T>(alpha);
        if (rounding == Rounding::Nearest) {  // nearest() on whole packets: Eigen's rint rounds half to even
            m.derived().array() = ((m.derived().array() * inv).rint() * s).cwiseMax(-a).cwiseMin(a);
            return;
        }
        for (Index r = 0; r < m.rows(); ++r)
            for (Index c = 0; c < m.cols(); ++c) {
                T& v = m.derived().coeffRef(r, c);
                v = rounding == Rounding::Nearest ? nearest(v, inv, s, a) : stochastic(v, rng.uniform(), inv, s, a);
            }
    }
};

// The quantiser's grid in the arithmetic type T, computed once per batch; Q(v) through operator().
template <class T>
struct QuantizerGrid {
    explicit QuantizerGrid(const Quantizer& quantizer)
        : q(quantizer),
          step(static_cast<T>(quantizer.step())),
          inv_step(T(1) / step),
          alpha(static_cast<T>(quantizer.alpha)) {}

    bool nearest() const { return q.rounding == Rounding::Nearest; }
    // Q(v); stochastic rounding draws its u from `rng`.
    T operator()(T v, Rng& rng) const {
        return nearest() ? q.nearest(v, inv_step, step, alpha) : q.stochastic(v, rng.uniform(), inv_step, step, alpha);
    }
    // bias += scale * Q(lr * b) for one example's postsynaptic row b (quantised bias updates).
    template <class Row, class Bias>
    void add_to_bias(const Row& b, T lr, T scale, Rng& rng, Bias&& bias) const {
        for (Index i = 0; i < bias.cols(); ++i) bias(i) += scale * (*this)(lr * b(i), rng);
    }

    const Quantizer& q;
    const T step, inv_step, alpha;
};

}  // namespace rbp
