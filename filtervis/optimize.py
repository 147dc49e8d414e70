"""The optimizer loop: many filters at once, one image each, every step inside one tf.function.

Loss per image (minimized) = -activation / scale + tv_weight * TV + lp_weight * Lp, where `scale` is
the filter's own typical response to noise (the standard deviation of its pre-activation over noise
images), so weights near 1 mean the same for every filter and layer, and TV and Lp are means over the
image, so they mean the same at every size. Adam runs in image
parameter space; the batch shape is fixed, so batches never retrace.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from . import objectives
from .params import Pixels
from .transforms import random_affine

ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
DEFAULT_CHUNK = 16  # steps per tf.function call: the progress bar updates this often
CONVERGENCE_RATIO = 2.0  # converged: activation at least this times its activation on uniform noise...
CONVERGENCE_FLOOR = 1e-3  # ...and above this share of the filter's typical response (clearly above 0)
START_THRESHOLD = 0.1  # below this share of its scale a filter is started through its pre-activation
SCALE_IMAGES = 4  # noise images that measure each filter's typical response


@dataclasses.dataclass(frozen=True)
class Settings:
    """Optimization settings of one run (see config.DEFAULT_*)."""

    steps: int
    lr: float
    tv_weight: float
    lp_weight: float
    lp_norm: float
    jitter: int
    seed: int


@dataclasses.dataclass(frozen=True)
class FilterResult:
    """One optimized filter. `image` is [H, W, 3] uint8; `activation` is measured on that image."""

    index: int
    image: np.ndarray
    activation: float
    noise_activation: float
    loss: float
    tv: float
    lp: float
    steps: int
    seconds: float
    scale: float
    finite: bool = True  # False: a NaN or Inf appeared in the image or loss at some step

    @property
    def converged(self) -> bool:
        """Finite, clearly positive and at least CONVERGENCE_RATIO times what uniform noise gives."""
        return (self.finite and self.activation > CONVERGENCE_FLOOR * self.scale
                and self.activation >= CONVERGENCE_RATIO * self.noise_activation)


def filter_key(seed: int, index: int) -> int:
    """The random stream of one filter: depends on the run's seed and the filter, never on the batch."""
    return (seed * 1_000_003 + index * 7_919 + 1) % (2**31 - 1)


def noise_images(keys, size: int) -> np.ndarray:
    """Uniform noise over the whole [0, 1] range, one image per key: the convergence baseline."""
    return np.stack([np.random.default_rng([key, 1]).uniform(0.0, 1.0, (size, size, 3)) for key in keys]
                    ).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[..., 3] floats in [0, 1] -> uint8, rounded."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


class Renderer:
    """Optimizes `batch` images at a time against a `models.Cut` (input -> target layer).

    `preprocess` maps RGB [0, 1] to model input. Create one per layer; call `render` per batch.
    """

    def __init__(self, cut, preprocess, size: int, batch: int, settings: Settings, param=None):
        self.model, self.activation, self.preprocess = cut.model, cut.activation, preprocess
        self.size, self.batch, self.settings = size, batch, settings
        self.param = param or Pixels()
        self.transform = random_affine(jitter=settings.jitter)
        shape = [batch, size, size, 3]
        self.params = tf.Variable(tf.zeros(shape), name="params")
        self.m = tf.Variable(tf.zeros(shape), trainable=False)
        self.v = tf.Variable(tf.zeros(shape), trainable=False)
        self.t = tf.Variable(0.0, trainable=False)
        self.filters = tf.Variable(tf.zeros([batch], tf.int32), trainable=False)
        self.keys = tf.Variable(tf.zeros([batch], tf.int32), trainable=False)
        self.finite = tf.Variable(tf.ones([batch], tf.bool), trainable=False)  # sticky, per image
        self.scales = tf.constant(self._filter_scales())

    def _filter_scales(self) -> np.ndarray:
        """[C] standard deviation of each filter's pre-activation over noise images (never 0)."""
        keys = [filter_key(self.settings.seed, -1 - i) for i in range(SCALE_IMAGES)]
        pre = self.model(self.preprocess(tf.constant(noise_images(keys, self.size))), training=False)
        std = tf.math.reduce_std(tf.reshape(pre, [-1, pre.shape[-1]]), axis=0).numpy()
        finite = np.isfinite(std)  # a NaN/Inf filter must not spoil the others' floor
        floor = max(float(std[finite].mean()) if finite.any() else 0.0, 1e-6) * 1e-3
        return np.maximum(np.where(finite, std, floor), floor).astype(np.float32)

    def _terms(self, images, activation, alive=1.0):
        """Loss, TV and Lp per image; regularizers count only for `alive` images (filter not silent)."""
        s = self.settings
        tv = objectives.total_variation(images)
        lp = objectives.lp_norm(images, s.lp_norm)
        loss = -activation / tf.gather(self.scales, self.filters) + alive * (s.tv_weight * tv + s.lp_weight * lp)
        return loss, tv, lp

    @tf.function(reduce_retracing=True)
    def _run(self, steps):
        s = self.settings
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                images = self.param.to_image(self.params)
                seen = images if self.transform is None else self.transform(images, self.keys, tf.cast(self.t, tf.int32))
                pre = self.model(self.preprocess(seen), training=False)
                post = objectives.channel(self.activation(pre), self.filters)
                threshold = START_THRESHOLD * tf.gather(self.scales, self.filters)
                start = objectives.start_objective(pre, self.filters, threshold)
                target = objectives.started(post, start, threshold)
                loss, _, _ = self._terms(images, target, alive=tf.cast(post > threshold, tf.float32))
                total = tf.reduce_sum(loss)
            grad = tape.gradient(total, self.params)
            self.finite.assign(self.finite & tf.math.is_finite(loss)
                               & tf.reduce_all(tf.math.is_finite(grad), axis=[1, 2, 3]))
            self.t.assign_add(1.0)
            self.m.assign(ADAM_BETA1 * self.m + (1 - ADAM_BETA1) * grad)
            self.v.assign(ADAM_BETA2 * self.v + (1 - ADAM_BETA2) * tf.square(grad))
            m_hat = self.m / (1 - ADAM_BETA1 ** self.t)
            v_hat = self.v / (1 - ADAM_BETA2 ** self.t)
            self.params.assign(self.param.project(self.params - s.lr * m_hat / (tf.sqrt(v_hat) + ADAM_EPSILON)))
        return self.t

    @tf.function(reduce_retracing=True)
    def _measure(self, images):
        """Activation and loss terms of each image as it is, no transform. [B] each."""
        outputs = self.activation(self.model(self.preprocess(images), training=False))
        activation = objectives.channel(outputs, self.filters)
        loss, tv, lp = self._terms(images, activation)
        return activation, loss, tv, lp

    def render(self, filters: list[int], starts: list[np.ndarray] | None = None, progress=None) -> list[FilterResult]:
        """Optimize one batch of up to `batch` filters; `starts` are optional start images in [0, 1].

        `progress(n)` is called with the number of filter-steps done after each chunk.
        """
        began = time.perf_counter()
        real = len(filters)
        padded = list(filters) + [filters[-1]] * (self.batch - real)
        keys = [filter_key(self.settings.seed, f) for f in padded]
        if starts is None:
            init = [self.param.init(np.random.default_rng([k, 0]), self.size) for k in keys]
        else:
            init = [self.param.from_image(img) for img in list(starts) + [starts[-1]] * (self.batch - real)]
        self.filters.assign(padded)
        self.keys.assign(keys)
        noise_activation = self._measure(tf.constant(noise_images(keys, self.size)))[0].numpy()
        self.params.assign(np.stack(init))
        for variable in (self.m, self.v):
            variable.assign(tf.zeros_like(variable))
        self.t.assign(0.0)
        self.finite.assign(tf.ones_like(self.finite))
        done = 0
        while done < self.settings.steps:
            chunk = min(DEFAULT_CHUNK, self.settings.steps - done)
            self._run(tf.constant(chunk, tf.int32))
            done += chunk
            if progress:
                progress(chunk * real)
        floats = self.param.to_image(self.params).numpy()
        pixels = to_uint8(np.nan_to_num(floats))
        activation, loss, tv, lp = (t.numpy() for t in self._measure(tf.constant(pixels, tf.float32) / 255.0))
        finite = self.finite.numpy() & np.isfinite(floats).all(axis=(1, 2, 3)) & np.isfinite(loss)
        seconds = (time.perf_counter() - began) / real
        return [FilterResult(int(filters[i]), pixels[i], float(activation[i]), float(noise_activation[i]),
                             float(loss[i]), float(tv[i]), float(lp[i]), self.settings.steps, seconds,
                             float(self.scales[filters[i]]), bool(finite[i]))
                for i in range(real)]


MAX_AUTO_BATCH = 16  # beyond this a batch no longer speeds up a step on a CPU
BYTES_PER_ACTIVATION = 4 * 3  # float32 forward value, its gradient, and working space
DEFAULT_MEMORY_SHARE = 0.25  # share of the machine's available memory a run may plan to use


def available_memory() -> int:
    """Bytes of memory available now (Linux /proc/meminfo, else total physical memory)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def bytes_per_image(model, size: int) -> int:
    """Estimated bytes one image needs through `model` and back: every layer output, nested ones too."""
    from .models import walk

    total = 0
    for _, layer in walk(model):
        try:
            shape = list(layer.output.shape[1:])
        except (AttributeError, ValueError):
            continue
        shape = [size if dim is None else dim for dim in shape]
        total += int(np.prod(shape)) * BYTES_PER_ACTIVATION
    return max(total, size * size * 3 * BYTES_PER_ACTIVATION)


def auto_batch(model, size: int, count: int, budget: int | None = None) -> int:
    """The largest batch (at most MAX_AUTO_BATCH and `count`) whose activations fit `budget` bytes."""
    budget = budget if budget is not None else int(available_memory() * DEFAULT_MEMORY_SHARE)
    return max(1, min(MAX_AUTO_BATCH, count, budget // bytes_per_image(model, size)))
