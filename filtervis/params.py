"""How the optimized image is parameterized. A parameterization says what shape its parameters have
(`shape`), how to start (`init`), how to turn parameters into RGB images in [0, 1] (`to_image`,
batched, inside the tf.function), how to start from a given image (`from_image`) and how to keep
parameters valid after each update (`project`).

`Pixels` is the image itself. `Fourier` is lucid's parameterization (Olah et al., "Feature
Visualization", Distill 2017): a spectrum scaled by 1/frequency^decay, inverse-FFT'd, its colours
mixed by the square root of ImageNet's colour correlation and squashed into [0, 1] by a sigmoid, so
that equal steps in parameter space are equal steps in a whitened image space.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import exact
from .config import DEFAULT_DECAY, PARAMS

DEFAULT_INIT_AMPLITUDE = 0.1  # pixel start: mid-grey +- this much
FOURIER_INIT_STD = 0.01  # fft start: spectrum parameters ~ N(0, this), a near-grey image
FOURIER_GAIN = 3.0  # image contrast (sigmoid units) per unit of parameter std: 2x lucid's at 128 px (see README: Scores)
SQUASH_EPSILON = 1e-3  # from_image clips to [eps, 1 - eps] so the sigmoid can be inverted

# Square root of the ImageNet RGB colour correlation (from its SVD), as published by Olah et al. 2017.
# Columns are colour directions: luminance, red-blue, green-magenta.
COLOR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02],
                                   [0.27, 0.00, -0.05],
                                   [0.27, -0.09, 0.03]], np.float32)
COLOR_MIX = COLOR_CORRELATION_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0))


class Pixels:
    """The image itself, kept in [0, 1] by clipping after each update. Parameters: [size, size, 3]."""

    name = "pixel"

    def shape(self, size: int) -> tuple[int, ...]:
        return (size, size, 3)

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


def frequency_scale(size: int, decay: float) -> np.ndarray:
    """[size, size // 2 + 1] gain of each rfft2 coefficient, proportional to 1 / max(f, 1/size)^decay
    (f in cycles per pixel) and normalized so that coefficients of unit std give pixels of unit std
    whatever the decay (the root mean square gain is `size`, undoing irfft2's 1/size^2)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    gain = 1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / size) ** decay
    return (gain / np.sqrt(np.mean(gain * gain)) * size).astype(np.float32)


class Fourier:
    """A decorrelated, 1/f-scaled spectrum. Parameters: [3, size, size // 2 + 1, 2] (real, imaginary
    parts of each colour channel's rfft2 coefficients; channels are the COLOR_MIX directions)."""

    name = "fft"

    def __init__(self, decay: float = DEFAULT_DECAY):
        if decay < 0:
            raise ValueError(f"decay must be 0 or more, but was {decay}")
        self.decay = decay

    def _scale(self, size: int) -> np.ndarray:
        return frequency_scale(size, self.decay) * FOURIER_GAIN

    def shape(self, size: int) -> tuple[int, ...]:
        return (3, size, size // 2 + 1, 2)

    def init(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Small Gaussian spectrum: a near-grey image with faint low-frequency colour."""
        return rng.normal(0.0, FOURIER_INIT_STD, self.shape(size)).astype(np.float32)

    def to_image(self, params):
        """[B, 3, H, W//2+1, 2] parameters -> [B, H, W, 3] RGB in (0, 1)."""
        size = params.shape[2]
        scale = tf.constant(self._scale(size))
        spectrum = tf.complex(params[..., 0] * scale, params[..., 1] * scale)
        planes = tf.signal.irfft2d(spectrum, fft_length=[size, size])  # [B, 3, H, W]
        decorrelated = tf.transpose(planes, [0, 2, 3, 1])
        # (the colour mix as a matmul: twice as fast as spectral or per-channel sums, and bit for bit
        # the same per image at every batch size, measured at sizes 16-224 and batches 1-16)
        mixed = tf.einsum("bhwc,dc->bhwd", decorrelated, tf.constant(COLOR_MIX))
        return exact.per_image(tf.sigmoid, mixed)

    def from_image(self, image: np.ndarray) -> np.ndarray:
        """Parameters whose `to_image` is `image` ([size, size, 3] in [0, 1]), up to 8-bit rounding."""
        size = image.shape[0]
        clipped = np.clip(image.astype(np.float64), SQUASH_EPSILON, 1.0 - SQUASH_EPSILON)
        logits = np.log(clipped / (1.0 - clipped))
        decorrelated = logits @ np.linalg.inv(COLOR_MIX.astype(np.float64)).T
        spectrum = np.fft.rfft2(np.transpose(decorrelated, (2, 0, 1))) / self._scale(size)
        return np.stack([spectrum.real, spectrum.imag], axis=-1).astype(np.float32)

    def project(self, params):
        return params


def build(name: str, decay: float = DEFAULT_DECAY):
    """The parameterization called `name` (`pixel` or `fft`)."""
    if name == "pixel":
        return Pixels()
    if name == "fft":
        return Fourier(decay)
    raise ValueError(f"unknown parameterization {name!r}; use one of {', '.join(PARAMS[1:])}")


AUTO_FFT_DOWNSAMPLING = 4  # auto: fft once the layer's map is this many times smaller than the image


def downsampling(model, size: int) -> float:
    """How many times smaller than the `size`-pixel input the output map of `model` is (inf for Dense)."""
    shape = model.output_shape
    return size / shape[1] if len(shape) == 4 and shape[1] else float("inf")


def resolve(name: str, decay: float, model, size: int):
    """The parameterization for `--param name` on the cut `model` at `size` pixels.

    `auto` picks pixels for early layers (output map less than AUTO_FFT_DOWNSAMPLING times smaller than
    the image: their filters want the fine detail a 1/f spectrum starves) and fft for deeper ones.
    """
    if name == "auto":
        name = "fft" if downsampling(model, size) >= AUTO_FFT_DOWNSAMPLING else "pixel"
    return build(name, decay)
