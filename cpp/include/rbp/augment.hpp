// Data augmentation for image batches: random translations with zero fill and horizontal flips
// (the paper's CIFAR-10 setup, section 4.3: shifts of up to 10% of the width and height and flips with
// probability 1/2, as Keras' ImageDataGenerator does them).
//
// Keras draws a real-valued shift and resamples the image (fill mode "nearest" by default); this
// kernel shifts by whole pixels and fills the uncovered border with zeros, so every output pixel is
// either an input pixel or exactly zero.
//
// The draws, per example in batch order, from one Rng:
//   1. dx = rng.below(2 * max_dx + 1) - max_dx, with max_dx = round(translate * width)
//   2. dy = rng.below(2 * max_dy + 1) - max_dy, with max_dy = round(translate * height)
//   3. if flip is on: flipped = rng.below(2) == 1 (probability exactly 1/2)
// so dx and dy are uniform over the integers of [-max, max] (one word is consumed even when max is
// 0). round() is std::lround: halves round away from zero. The example is then moved dx pixels to
// the right and dy pixels down (out[y][x] = in[y - dy][x - dx], zero where that falls outside), and
// then mirrored left-right when flipped (out[y][x] = shifted[y][width - 1 - x]). All channels of an
// example get the same dx, dy and flip.
#pragma once

#include "rbp/random.hpp"
#include "rbp/types.hpp"

namespace rbp {

struct AugmentSpec {
    // Largest shift as a fraction of the width (horizontal) and height (vertical), in [0, 1).
    double translate = 0.0;
    bool flip = false;
};

// What was drawn for one example.
struct AugmentDraw {
    Index dx = 0;
    Index dy = 0;
    bool flipped = false;
};

// Throws std::invalid_argument unless translate is finite and in [0, 1).
void validate(const AugmentSpec& spec);

// The largest shift, in pixels, along an axis of `extent` pixels: round(translate * extent).
Index max_shift(double translate, Index extent);

// Augments a C-contiguous (n, channels, height, width) batch in place. When `draws` is not null it
// receives the n draws. Single-threaded: the work is a copy of the batch, and doing it in batch
// order makes the result independent of the thread count.
template <class T>
void augment_batch(T* x, Index n, Index channels, Index height, Index width, const AugmentSpec& spec, Rng& rng,
                   AugmentDraw* draws = nullptr);

extern template void augment_batch<float>(float*, Index, Index, Index, Index, const AugmentSpec&, Rng&, AugmentDraw*);
extern template void augment_batch<double>(double*, Index, Index, Index, Index, const AugmentSpec&, Rng&, AugmentDraw*);

}  // namespace rbp
