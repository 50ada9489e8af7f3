#include "rbp/augment.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace rbp {

namespace {

AugmentDraw draw(Index max_dx, Index max_dy, bool flip, Rng& rng) {
    AugmentDraw d;
    d.dx = static_cast<Index>(rng.below(static_cast<std::uint64_t>(2 * max_dx + 1))) - max_dx;
    d.dy = static_cast<Index>(rng.below(static_cast<std::uint64_t>(2 * max_dy + 1))) - max_dy;
    d.flipped = flip && rng.below(2) == 1;
    return d;
}

// Moves one row dx pixels to the right (left when negative), zero filling, then mirrors it. The
// overlapping moves run in the direction that reads each pixel before it is overwritten.
template <class T>
void shift_row(T* row, Index width, Index dx, bool flipped) {
    const Index kept = std::max<Index>(0, width - std::abs(dx));
    if (dx > 0) {
        std::copy_backward(row, row + kept, row + width);
        std::fill(row, row + (width - kept), T(0));
    } else if (dx < 0) {
        std::copy(row - dx, row - dx + kept, row);
        std::fill(row + kept, row + width, T(0));
    }
    if (flipped) std::reverse(row, row + width);
}

// Moves one plane dy rows down (up when negative), zero filling, and each kept row as shift_row does.
template <class T>
void shift_plane(T* plane, Index height, Index width, const AugmentDraw& d) {
    const Index kept = std::max<Index>(0, height - std::abs(d.dy));
    T* const end = plane + height * width;
    if (d.dy > 0) {
        std::copy_backward(plane, plane + kept * width, end);
        std::fill(plane, plane + (height - kept) * width, T(0));
    } else if (d.dy < 0) {
        std::copy(plane - d.dy * width, plane + (kept - d.dy) * width, plane);
        std::fill(plane + kept * width, end, T(0));
    }
    // Rows that are all zero now stay zero under any horizontal shift or flip.
    const Index first = d.dy > 0 ? height - kept : 0;
    if (d.dx == 0 && !d.flipped) return;
    for (Index r = first; r < first + kept; ++r) shift_row(plane + r * width, width, d.dx, d.flipped);
}

}  // namespace

void validate(const AugmentSpec& spec) {
    require(std::isfinite(spec.translate) && spec.translate >= 0.0 && spec.translate < 1.0,
            "translate must be a fraction in [0, 1), got " + std::to_string(spec.translate));
}

Index max_shift(double translate, Index extent) {
    return static_cast<Index>(std::lround(translate * static_cast<double>(extent)));
}

template <class T>
void augment_batch(T* x, Index n, Index channels, Index height, Index width, const AugmentSpec& spec, Rng& rng,
                   AugmentDraw* draws) {
    validate(spec);
    require(n >= 0 && channels >= 0 && height >= 0 && width >= 0, "batch dimensions must be non-negative");
    const Index max_dx = max_shift(spec.translate, width);
    const Index max_dy = max_shift(spec.translate, height);
    const Index plane = height * width;
    for (Index i = 0; i < n; ++i) {
        const AugmentDraw d = draw(max_dx, max_dy, spec.flip, rng);
        if (draws != nullptr) draws[i] = d;
        T* example = x + i * channels * plane;
        for (Index c = 0; c < channels; ++c) shift_plane(example + c * plane, height, width, d);
    }
}

template void augment_batch<float>(float*, Index, Index, Index, Index, const AugmentSpec&, Rng&, AugmentDraw*);
template void augment_batch<double>(double*, Index, Index, Index, Index, const AugmentSpec&, Rng&, AugmentDraw*);

}  // namespace rbp
