"""How the optimized image is parameterized. A parameterization says how to start (`init`), how to
turn parameters into an RGB image in [0, 1] (`to_image`, inside the tf.function), how to start from a
given image (`from_image`) and how to keep parameters valid after each update (`project`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

DEFAULT_INIT_AMPLITUDE = 0.1  # starting noise: mid-grey +- this much


class Pixels:
    """The image itself, kept in [0, 1] by clipping after each update."""

    name = "pixel"

    def init(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Low-amplitude noise around mid-grey, [size, size, 3] float32."""
        noise = rng.uniform(-DEFAULT_INIT_AMPLITUDE, DEFAULT_INIT_AMPLITUDE, (size, size, 3))
        return (0.5 + noise).astype(np.float32)

    def from_image(self, image: np.ndarray) -> np.ndarray:
        """Parameters reproducing `image` ([H, W, 3] in [0, 1])."""
        return np.clip(image, 0.0, 1.0).astype(np.float32)

    def to_image(self, params):
        return params

    def project(self, params):
        return tf.clip_by_value(params, 0.0, 1.0)
