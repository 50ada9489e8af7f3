// Portable, seedable random streams. std::normal_distribution is implementation-defined, so the
// core draws its own numbers: the same seed gives the same numbers with every compiler.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace rbp {

// SplitMix64 finaliser: used to expand one 64-bit seed into stream seeds and generator state.
constexpr std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Seed of an independent stream ("init", "feedback", "shuffle", "dropout", ...) derived from a
// run seed, so that changing how one stream is consumed never shifts another.
std::uint64_t derive_seed(std::uint64_t run_seed, std::string_view stream);

// xoshiro256** with explicit uniform and Gaussian draws.
class Rng {
public:
    explicit Rng(std::uint64_t seed = 0);

    std::uint64_t next();
    // Uniform in [0, 1) with 53 random bits.
    double uniform();
    // Uniform integer in [0, bound), unbiased (Lemire's method with rejection).
    std::uint64_t below(std::uint64_t bound);
    // Standard normal by the Box-Muller transform (both values of each pair are used).
    double normal();

    // The whole generator state (the four words, the bits of the cached Gaussian, whether it is
    // cached), for checkpoints: a generator given a saved state continues the same sequence.
    using State = std::array<std::uint64_t, 6>;
    State state() const;
    void set_state(const State& state);

private:
    std::uint64_t s_[4];
    double spare_ = 0.0;
    bool has_spare_ = false;
};

}  // namespace rbp
