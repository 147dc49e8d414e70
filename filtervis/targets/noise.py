"""What every target is measured against: each picture's random stream, uniform noise images drawn
from it, and a filter's spread over them (its scale: its typical response to noise).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

START_THRESHOLD = 0.1  # below this share of its scale a filter is started through its pre-activation
SCALE_IMAGES = 4  # noise images that measure each filter's typical response (and its noise activation)


def filter_key(seed: int, index: int) -> int:
    """The random stream of one filter: depends on the run's seed and the filter, never on the batch."""
    return (seed * 1_000_003 + index * 7_919 + 1) % (2**31 - 1)


VARIANT_SEED_STRIDE = 1_000_000  # picture k of a filter (--diversity) draws from seed + k * this


def variant_key(seed: int, index: int, variant: int) -> int:
    """The random stream of picture `variant` of a filter (--diversity): that of the filter at seed
    seed + variant * VARIANT_SEED_STRIDE (picture 0's is `filter_key(seed, index)`)."""
    return filter_key(seed + variant * VARIANT_SEED_STRIDE, index)


def noise_images(keys, image_shape) -> np.ndarray:
    """Uniform noise over the whole [0, 1] range, one image [H, W, C] per key: the convergence baseline."""
    return np.stack([np.random.default_rng([key, 1]).uniform(0.0, 1.0, tuple(image_shape)) for key in keys]
                    ).astype(np.float32)


def scale_noise(seed: int, image_shape) -> np.ndarray:
    """The SCALE_IMAGES noise images every target measures its scales on."""
    return noise_images([filter_key(seed, -1 - i) for i in range(SCALE_IMAGES)], image_shape)


def spread(pre) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of `pre` [N, ..., C]: (standard deviation over images and places, never below a
    floor of 1e-3 of the layer's mean one (finite ones only); whether it was finite)."""
    std = tf.math.reduce_std(tf.reshape(pre, [-1, pre.shape[-1]]), axis=0).numpy()
    finite = np.isfinite(std)  # a NaN/Inf filter must not spoil the others' floor
    floor = max(float(std[finite].mean()) if finite.any() else 0.0, 1e-6) * 1e-3
    return np.maximum(np.where(finite, std, floor), floor).astype(np.float32), finite
