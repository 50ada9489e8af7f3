// The low-bit quantiser of the paper's section 5: Q(x) = clip(D * round(x / D), -alpha, alpha),
// D = alpha * 2^(1 - bits).
#pragma once

#include "rbp/random.hpp"
#include "rbp/types.hpp"

#include <cmath>

namespace rbp {

enum class Rounding { Nearest, Stochastic };

struct Quantizer {
    int bits = 8;
    double alpha = 0.125;
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
        for (Index r = 0; r < m.rows(); ++r)
            for (Index c = 0; c < m.cols(); ++c) {
                T& v = m.derived().coeffRef(r, c);
                v = rounding == Rounding::Nearest ? nearest(v, inv, s, a) : stochastic(v, rng.uniform(), inv, s, a);
            }
    }
};

}  // namespace rbp
