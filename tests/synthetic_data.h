// Synthetic Fashion-MNIST-shaped data: the four gzipped IDX files with a pattern a
// tiny model learns in a couple of epochs, for tests and quick runs without the
// real dataset.
//
// Contract: WriteSyntheticFashionMnist writes train-images-idx3-ubyte.gz,
// train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
// t10k-labels-idx1-ubyte.gz (28x28 images, labels 0..9) into `dir`, which must
// exist. Class c is a bright 5x5 blob at a class-dependent position (two rows of
// five slots), jittered by up to 2 pixels, over uniform background noise; one
// example in ten shows a random class's blob instead (best accuracy ~0.91); labels
// cycle 0..9 in a seeded order, so each class holds count/10 examples (+1 for the
// first count%10 classes). Same seed, same bytes; train and test use different
// draws.
// Thread safety: a free function; concurrent calls must use different dirs.
#pragma once

#include <cstdint>
#include <string>

#include "greenfed/status.h"

namespace greenfed {

Status WriteSyntheticFashionMnist(const std::string& dir, uint32_t train_count, uint32_t test_count, uint64_t seed);

}  // namespace greenfed
