"""Robustness transforms applied to the image before the model at every step: configure, then apply.

`random_affine(...)` checks its arguments once and returns `apply(images, keys, step)`, which shifts,
scales and rotates every image of the batch by its own random amount in one projective-transform op
(reflected borders, bilinear sampling, differentiable). Randomness is stateless: it depends only on
each image's key and the step, so a filter's result does not depend on the batch it was run in.
Images are [B, H, W, C] in [0, 1], of any height, width and channel count.
"""

from __future__ import annotations

import math

import tensorflow as tf

NAMES = ("standard", "none")  # the transform sets `build` knows


def _per_image(keys, step, count, function):
    """[B, ...] = function(draws) for each image, `draws` being `count` uniform numbers in [0, 1) from
    the image's own stream (its key and the step). Each image's numbers are computed on their own, at
    one fixed shape, so they are bit for bit the same whatever the batch: element-wise math (cos, sin)
    takes a different code path for a vector than for a lone value, so it must not see the batch."""
    seeds = tf.stack([keys, tf.fill(tf.shape(keys), step)], axis=1)
    return tf.map_fn(lambda seed: function(tf.random.stateless_uniform([count], seed, 0.0, 1.0)), seeds,
                     fn_output_signature=tf.float32)


def random_affine(jitter: int = 0, scale: tuple[float, float] = (1.0, 1.0), degrees: float = 0.0):
    """Random shift by up to `jitter` pixels, zoom in `scale`, rotation up to +-`degrees`.

    Returns None when every range is empty (no transform at all).
    """
    if jitter < 0 or degrees < 0 or not 0 < scale[0] <= scale[1]:
        raise ValueError(f"bad transform ranges: jitter={jitter}, scale={scale}, degrees={degrees}")
    if jitter == 0 and scale == (1.0, 1.0) and degrees == 0:
        return None
    max_angle = math.radians(degrees)

    def apply(images, keys, step):
        height = tf.cast(tf.shape(images)[1], tf.float32)
        width = tf.cast(tf.shape(images)[2], tf.float32)
        cy, cx = (height - 1.0) / 2.0, (width - 1.0) / 2.0

        def matrix(draws):
            shift = tf.round((draws[0:2] * 2.0 - 1.0) * jitter)
            zoom = scale[0] + draws[2] * (scale[1] - scale[0])
            angle = (draws[3] * 2.0 - 1.0) * max_angle
            cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
            # output (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): rotate/zoom about the centre, shift.
            a2 = cx - cos * cx + sin * cy + shift[0]
            b2 = cy - sin * cx - cos * cy + shift[1]
            return tf.stack([cos, -sin, a2, sin, cos, b2, 0.0, 0.0])

        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=_per_image(keys, step, 4, matrix), output_shape=tf.shape(images)[1:3],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")

    return apply


STANDARD_SCALE = (0.9, 1.1)  # zoom range of `standard`: covers a 10% zoom either way
STANDARD_DEGREES = 8.0  # rotation range of `standard`, +- degrees
STANDARD_BLUR = 1.0  # `standard` blends in up to this much Gaussian blur (sigma, pixels)


def gaussian_kernel(sigma: float, channels: int = 3) -> "tf.Tensor":
    """[k, k, channels, 1] depthwise kernel of a normalized Gaussian, k = 2 * ceil(2 sigma) + 1."""
    radius = max(1, math.ceil(2 * sigma))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    line = tf.exp(-x * x / (2.0 * sigma * sigma))
    plane = line[:, None] * line[None, :]
    plane = plane / tf.reduce_sum(plane)
    return tf.tile(plane[:, :, None, None], [1, 1, channels, 1])


def random_blur(sigma: float):
    """Blend every image with its Gaussian blur (`sigma` pixels) by its own random weight in [0, 1]:
    images must keep working when softened, so they hold less pixel-fine noise. Images are
    [B, H, W, C], any C known when traced (every channel blurred alike)."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be above 0, but was {sigma}")
    plane = gaussian_kernel(sigma, channels=1)  # computed once, here: copied per channel when applied
    radius = (plane.shape[0] - 1) // 2

    def apply(images, keys, step):
        channels = images.shape[-1]
        if channels is None:
            raise ValueError(f"random_blur needs images with a known channel count, but their shape was {images.shape}")
        kernel = tf.tile(plane, [1, 1, channels, 1])
        padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
        blurred = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
        weight = _per_image(keys + 7, step, 1, lambda draws: draws)[:, :, None, None]
        return images + weight * (blurred - images)

    return apply


def compose(*transforms):
    """One transform applying `transforms` in order (None entries skipped); None when all are None."""
    chain = [t for t in transforms if t is not None]
    if not chain:
        return None

    def apply(images, keys, step):
        for transform in chain:
            images = transform(images, keys, step)
        return images

    return apply


def build(name: str, jitter: int):
    """The transform set called `name`: `standard` (shift by up to `jitter` pixels, zoom in
    STANDARD_SCALE, rotate by up to STANDARD_DEGREES, blend in up to STANDARD_BLUR of blur) or `none`
    (returns None)."""
    if name == "none":
        return None
    if name == "standard":
        return compose(random_affine(jitter=jitter, scale=STANDARD_SCALE, degrees=STANDARD_DEGREES),
                       random_blur(STANDARD_BLUR))
    raise ValueError(f"unknown transforms {name!r}; use one of {', '.join(NAMES)}")
