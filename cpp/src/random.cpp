#include "rbp/random.hpp"

#include <cstring>

namespace rbp {

namespace {
constexpr std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// FNV-1a: a fixed, documented hash of a stream name.
std::uint64_t hash_name(std::string_view name) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : name) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    return h;
}
}  // namespace

std::uint64_t derive_seed(std::uint64_t run_seed, std::string_view stream) {
    std::uint64_t state = run_seed ^ hash_name(stream);
    splitmix64(state);
    return splitmix64(state);
}

Rng::Rng(std::uint64_t seed) {
    std::uint64_t state = seed;
    for (auto& word : s_) word = splitmix64(state);
}

std::uint64_t Rng::next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

std::uint64_t Rng::below(std::uint64_t bound) {
    if (bound == 0) return 0;
    __uint128_t m = static_cast<__uint128_t>(next()) * bound;
    auto low = static_cast<std::uint64_t>(m);
    if (low < bound) {
        const std::uint64_t threshold = (0 - bound) % bound;
        while (low < threshold) {
            m = static_cast<__uint128_t>(next()) * bound;
            low = static_cast<std::uint64_t>(m);
        }
    }
    return static_cast<std::uint64_t>(m >> 64);
}

double Rng::normal() {
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    // 1 - uniform() lies in (0, 1], so the logarithm is finite.
    const double radius = std::sqrt(-2.0 * std::log(1.0 - uniform()));
    const double angle = 2.0 * 3.14159265358979323846 * uniform();
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
}

Rng::State Rng::state() const {
    std::uint64_t spare_bits = 0;
    std::memcpy(&spare_bits, &spare_, sizeof spare_bits);
    return {s_[0], s_[1], s_[2], s_[3], spare_bits, has_spare_ ? 1u : 0u};
}

void Rng::set_state(const State& state) {
    for (std::size_t i = 0; i < 4; ++i) s_[i] = state[i];
    std::memcpy(&spare_, &state[4], sizeof spare_);
    has_spare_ = state[5] != 0;
}

}  // namespace rbp
