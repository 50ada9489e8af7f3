// Timing helpers shared by the benchmark programs of benchmarks/cpp.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace rbp_bench {

using Clock = std::chrono::steady_clock;

inline double median(std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
}

// Microseconds per call of `run(calls)`, which makes `calls` calls.
template <class Run>
double chunk_us(const Run& run, int calls) {
    const auto t0 = Clock::now();
    run(calls);
    return std::chrono::duration<double>(Clock::now() - t0).count() * 1e6 / calls;
}

struct Alternation {
    double a_us, b_us;  // medians of the time per call
    double a_over_b;    // median of the per-chunk ratios
};

// Two ways of doing the same work, timed alternately in chunks of about 2 ms (sized on `a`) for at
// least `seconds` and 7 chunks each, so that both see the same machine state. `a(calls)` and
// `b(calls)` each make `calls` calls.
template <class A, class B>
Alternation alternate(const A& a, const B& b, double seconds) {
    int calls = 1;
    while (chunk_us(a, calls) * calls < 2000.0 && calls < (1 << 16)) calls *= 2;
    for (int i = 0; i < 2; ++i) chunk_us(b, calls), chunk_us(a, calls);  // warm-up
    std::vector<double> ta, tb, ratio;
    const auto start = Clock::now();
    while (ratio.size() < 7 || std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
        ta.push_back(chunk_us(a, calls));
        tb.push_back(chunk_us(b, calls));
        ratio.push_back(ta.back() / tb.back());
    }
    return {median(ta), median(tb), median(ratio)};
}

}  // namespace rbp_bench
