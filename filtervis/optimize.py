"""The optimizer loop: many filters at once, one image each, every step inside one tf.function.

Loss per image (minimized) = -activation / scale + tv_weight * TV + lp_weight * Lp (targets.loss), where
`scale` is the filter's own typical response to noise (the standard deviation of its pre-activation over
noise images), so weights near 1 mean the same for every filter and layer, and TV and Lp are means over
the image, so they mean the same at every size. The weights are the compiled target's (its objectives'
terms, see targets.compile_goals); `Settings` holds the rest of what the loop reads. Adam runs in image
parameter space; the batch shape is fixed, so batches never retrace.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from . import measures, targets, transforms
from .models import batched_chains, per_image
from .params import Pixels, squash
from .targets import filter_key

ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
DEFAULT_CHUNK = 16  # steps per tf.function call: the progress bar updates this often
CONVERGENCE_RATIO = 2.0  # converged: activation at least this times its activation on uniform noise...
CONVERGENCE_FLOOR = 1e-6  # ...and above this share of the filter's typical response (above 0 beyond rounding)
RESCUE_FLOOR = 1e-3  # a converged filter below this share of its typical response is still rescued (`strong`)
MIN_EARLY_STOP_STEPS = 4 * DEFAULT_CHUNK  # early stopping never stops a filter before this many steps
INIT_STREAM, START_STREAM = 0, 2  # a picture's random streams (with its key): its start parameters, and what
# a start image leaves open (targets.noise_images draws from stream 1)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the optimizer loop reads of a run's options (their defaults and checks are options.py's).
    The objective's own terms (TV, Lp, colour range, diversity) are the compiled target's, not these."""

    steps: int  # optimization steps per picture
    lr: float  # Adam's step size, in parameter units per step
    seed: int  # the run's seed: a picture's random stream is targets.filter_key(seed, filter) unless given
    transforms: str  # the transform set applied before each step (transforms.NAMES)
    jitter: int  # pixels: the largest random shift of a step
    early_stop: float  # a picture stops once its loss improves by less than this share per chunk (0: never)
    alpha: bool  # accumulate |d loss / d image| per picture (FilterResult.alpha)
    gif: bool  # keep a frame per chunk (FilterResult.frames)
    diversity: int  # pictures per filter: consecutive groups of this many images share a filter

    @classmethod
    def of(cls, options) -> "Settings":
        """The Settings of `options`: any object with these fields as attributes (an options.RunSpec)."""
        return cls(**{field.name: getattr(options, field.name) for field in dataclasses.fields(cls)})


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
    frames: tuple = ()  # [H, W, 3] uint8 snapshots at chunk boundaries, first and last included, when asked
    peak: float = float("nan")  # highest pre-activation of the filter's units (centre unit: neuron) on `image`,
    # or a class's lead; after a rescue, the highest on every image and start tried (see rescue.py)
    dead: bool = False  # set by a rescue: no image or start tried, noise included, drove `peak` above 0 (a
    # channel that never fired; a class that never won)
    alpha: np.ndarray | None = None  # [H, W, 1] uint8 transparency (see `alpha_map`) when settings.alpha
    lead: float | None = None  # a class's lead over the runner-up on `image` (measures.class_lead: above 0
    # exactly when the model puts the picture in its class); None for a filter that is not a class

    @property
    def converged(self) -> bool:
        """Finite, and for a class: the model puts the picture in it (`lead` above 0); for a filter:
        above 0 and at least CONVERGENCE_RATIO times what uniform noise gives."""
        if self.lead is not None:
            return bool(self.finite and self.lead > 0)
        return (self.finite and self.activation > CONVERGENCE_FLOOR * self.scale
                and self.activation >= CONVERGENCE_RATIO * self.noise_activation)

    @property
    def strong(self) -> bool:
        """Converged, and for a filter clearly so: above RESCUE_FLOOR of its typical response. The rescue
        reruns those that are not (a filter can fire only in a few places and be worth another try)."""
        return self.converged and (self.lead is not None or self.activation > RESCUE_FLOOR * self.scale)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8, rounded."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


ALPHA_PERCENTILE = 99.0  # --alpha: the accumulated gradient magnitude is divided by this percentile of its own


def alpha_map(attribution: np.ndarray) -> np.ndarray:
    """[H, W, C] accumulated |d loss / d image| -> [H, W, 1] uint8 alpha: summed over the channels, divided
    by its ALPHA_PERCENTILE percentile (MACO's transparency map: where the picture mattered to the
    objective) and clipped to [0, 1]; all 0 when the gradient was 0 everywhere."""
    magnitude = np.nan_to_num(np.asarray(attribution, np.float64)).sum(axis=-1, keepdims=True)
    top = float(np.percentile(magnitude, ALPHA_PERCENTILE))
    if top <= 0:
        return np.zeros(magnitude.shape, np.uint8)
    return to_uint8(magnitude / top)


class Renderer:
    """Optimizes `batch` images at a time against a compiled target (`targets.LayerFilters` or
    `targets.ObjectiveBatch`, see targets.compile_goals): item `items[i]` of the target for image i.

    `image_shape` is (height, width, channels); `preprocess` maps images in [0, 1] to model input;
    `settings` is a `Settings`; `param` the parameterization (default: `params.Pixels`).
    Build one per target and settings; call `render` per batch. The parts: `_reset` loads a batch's
    start into the optimizer's variables, `steps` runs a chunk of steps (compiled), `_step` is one step
    of one chain, `measure` scores finished images, `render` drives the chunks (early stopping,
    progress, frames).
    """

    def __init__(self, target, preprocess, image_shape, batch: int, settings: Settings, param=None):
        self.target = target
        self.preprocess = preprocess
        self.image_shape, self.batch, self.settings = tuple(image_shape), batch, settings
        self.param = param or Pixels(self.image_shape)
        # the objectives' colour-range terms (targets.colour_penalty), for sigmoid parameterizations only
        weights = self.target.colour_weights()
        self.colour_weights = None if isinstance(self.param, Pixels) or not np.any(weights.numpy()) else weights
        self.transform = transforms.build(settings.transforms, settings.jitter)
        self.regularizers = self.target.regularizers()  # (tv weights, lp weights, p)
        self.tv_weights, self.lp_weights, self.lp_p = self.regularizers
        self.regularized = bool(np.any(self.tv_weights.numpy()) or np.any(self.lp_weights.numpy()))
        shape = [batch, *self.param.shape]
        self.params = tf.Variable(tf.zeros(shape), name="params")
        self.m = tf.Variable(tf.zeros(shape), trainable=False)
        self.v = tf.Variable(tf.zeros(shape), trainable=False)
        self.t = tf.Variable(0.0, trainable=False)
        self.items = tf.Variable(tf.zeros([batch], tf.int32), trainable=False)
        self.keys = tf.Variable(tf.zeros([batch], tf.int32), trainable=False)
        self.finite = tf.Variable(tf.ones([batch], tf.bool), trainable=False)  # sticky, per image
        self.active = tf.Variable(tf.ones([batch]), trainable=False)  # 0 once a filter has stopped early
        # accumulated |d loss / d image| per image ([B, H, W, C]; one value when --alpha is off)
        self.attribution = tf.Variable(tf.zeros([batch, *self.image_shape] if settings.alpha else [batch, 1, 1, 1]),
                                       trainable=False)
        self.group = settings.diversity
        if batch % self.group:
            raise ValueError(f"batch {batch} must be a multiple of the pictures per filter ({self.group})")
        # A model computing in a lower type (--precision) runs a chain's images in one pass (see
        # models.batched_passes); a float32 one runs each image alone (see models.per_image)
        self.batched = self.target.batched
        self.chains = chain_bounds(batch, batched_chains(self.target.cut, batch, CHAINS) if self.batched else CHAINS,
                                   group=self.group)
        self.diverse = self.group > 1 and bool(self.target.diversity)  # the objectives' diversity terms apply
        # One step of one chain, as a function of its own that `steps` calls (see NO_INLINE)
        self._chain_step = tf.function(self._step, experimental_attributes=NO_INLINE)

    # --- one batch's start ----------------------------------------------------------------------

    def _reset(self, items: list[int], keys: list[int], starts) -> None:
        """Load a batch (padded to `batch`): its items, random keys and start parameters; zero Adam.
        A start image can leave parameters open (maco: the phases of what the image lacks); those draw
        from the picture's own stream, one apart from its `init`'s (a tile start's full-size image
        would otherwise reuse the numbers its tile started from)."""
        if starts is None:
            init = [self.param.init(np.random.default_rng([k, INIT_STREAM])) for k in keys]
        else:
            init = [self.param.from_image(img, np.random.default_rng([k, START_STREAM]))
                    for img, k in zip(starts, keys)]
        self.items.assign(items)
        self.keys.assign(keys)
        self.params.assign(np.stack(init))
        for variable in (self.m, self.v, self.attribution):
            variable.assign(tf.zeros_like(variable))
        self.t.assign(0.0)
        self.finite.assign(tf.ones_like(self.finite))
        self.active.assign(tf.ones([self.batch]))

    # --- the compiled loop ----------------------------------------------------------------------

    @tf.function(reduce_retracing=True)
    def steps(self, count):
        """`count` optimization steps of the whole batch; returns each image's loss summed over them, [B].

        The batch runs as independent chains (see CHAINS): each carries its images' parameters, Adam
        moments and flags through the loop, and the variables are read before and written after it.
        """
        t0 = self.t.read_value()
        items, keys = self.items.read_value(), self.keys.read_value()
        rates = self.settings.lr * self.active.read_value()  # 0 for a filter that stopped early
        params, m, v, finite, attribution = (var.read_value() for var in (self.params, self.m, self.v, self.finite,
                                                                          self.attribution))
        chains = tuple((params[a:b], m[a:b], v[a:b], finite[a:b], tf.zeros([b - a]), attribution[a:b])
                       for a, b in self.chains)

        def body(i, chains):
            t = t0 + tf.cast(i, tf.float32)
            return i + 1, tuple(self._chain_step(*chain, t, items[a:b], keys[a:b], rates[a:b], a)
                                for chain, (a, b) in zip(chains, self.chains))

        _, chains = tf.while_loop(lambda i, _: i < count, body, (tf.constant(0), chains))
        params, m, v, finite, total_loss, attribution = (tf.concat(parts, axis=0) for parts in zip(*chains))
        self.attribution.assign(attribution)
        self.params.assign(params)
        self.m.assign(m)
        self.v.assign(v)
        self.finite.assign(finite)
        self.t.assign(t0 + tf.cast(count, tf.float32))
        return total_loss

    def _objective(self, inputs, items, first: int, features: bool = False):
        """(activation, start) of a chain whose first image is image `first` of the batch, each image alone
        (with `features`, also each image's feature maps, see targets.LayerFilters.objective)."""
        if self.batched:
            return self.target.objective(inputs, items, first, features=features)
        if features:
            return per_image(lambda x, item, i: self.target.objective(x, item, first + i, features=True),
                             inputs, items)
        return per_image(lambda x, item, i: self.target.objective(x, item, first + i), inputs, items)

    def _step(self, params, m, v, finite, total_loss, attribution, t, items, keys, rates, first: int):
        """One step of one chain (images `first`... of the batch) at step count `t` (steps done before
        it): its new (params, m, v, finite, total_loss, attribution); `attribution` accumulates
        |d loss / d image| when settings.alpha (else it is passed on as it is)."""
        with tf.GradientTape() as tape:
            tape.watch(params)
            if self.colour_weights is None:
                images, logits = self.param.to_image(params), None
            else:  # a sigmoid parameterization: the colour range reads its logits
                logits = self.param.logits(params)
                images = squash(logits)
            seen = images if self.transform is None else self.transform(images, keys, tf.cast(t, tf.int32))
            if self.diverse:
                post, start, maps = self._objective(self.preprocess(seen), items, first, features=True)
            else:
                post, start, maps = (*self._objective(self.preprocess(seen), items, first), None)
            loss = targets.loss(self.target, images, items, post, start, maps, self.group,
                                self.regularizers if self.regularized else None, self.colour_weights, logits)
            total = tf.reduce_sum(loss)
        if self.settings.alpha:  # where the picture matters to the objective (the colour range reads the logits)
            grad, image_grad = tape.gradient(total, [params, images])
            attribution = attribution + tf.abs(image_grad)
        else:
            grad = tape.gradient(total, params)
        finite &= tf.math.is_finite(loss) & tf.reduce_all(tf.math.is_finite(grad), axis=list(range(1, len(grad.shape))))
        rate = tf.reshape(rates, [-1] + [1] * (len(params.shape) - 1))
        params, m, v = _adam(params, m, v, grad, t + 1.0, rate)
        return self.param.project(params), m, v, finite, total_loss + loss, attribution

    # --- scoring --------------------------------------------------------------------------------

    @tf.function(reduce_retracing=True)
    def measure(self, images):
        """(activation, loss, TV, Lp, peak) of each image as it is, no transform, [B] each (values only:
        no gradient). `peak` is the highest pre-activation of its filter, or a class's lead (see
        targets.LayerFilters.peak)."""
        inputs, items = self.preprocess(images), self.items.read_value()
        exact = getattr(self.target, "exact", None)  # float32 measures of a model computing in a lower type
        if exact is None:
            activation, _ = self._objective(inputs, items, 0)
        else:
            activation, peak = per_image(exact.activation_and_peak, inputs, items)
        tv, lp = measures.total_variation(images), measures.lp_norm(images, self.lp_p)
        loss = (-activation * tf.gather(self.target.inverse_scales, items)
                + tf.gather(self.tv_weights, items) * tv + tf.gather(self.lp_weights, items) * lp)
        if exact is None:
            (peak,) = per_image(lambda x, item, i: (self.target.peak(x, item, i),), inputs, items)
        return activation, loss, tv, lp, peak

    # --- one batch ------------------------------------------------------------------------------

    def render(self, items: list[int], starts: list[np.ndarray] | None = None, progress=None,
               keys: list[int] | None = None) -> list[FilterResult]:
        """Optimize one batch of up to `batch` items (filters); `starts` are optional start images in [0, 1];
        `keys` the items' random streams (default: `targets.filter_key(seed, item)`).

        `progress(n)` is called with the number of filter-steps done after each chunk. With
        `settings.early_stop`, a filter whose loss fell by less than that share of its size over a
        chunk keeps its image from then on (its `steps` tell when it stopped); the batch ends when
        every filter has stopped.
        """
        began = time.perf_counter()
        real = len(items)
        pad = self.batch - real
        keys = list(keys) if keys is not None else [filter_key(self.settings.seed, f) for f in items]
        self._reset(list(items) + [items[-1]] * pad, keys + [keys[-1]] * pad,
                    None if starts is None else list(starts) + [starts[-1]] * pad)
        ran, frames = self._optimize(real, progress)
        floats = self.param.to_image(self.params).numpy()
        pixels = to_uint8(np.nan_to_num(floats))
        activation, loss, tv, lp, peak = (t.numpy() for t in self.measure(tf.constant(pixels, tf.float32) / 255.0))
        finite = self.finite.numpy() & np.isfinite(floats).all(axis=(1, 2, 3)) & np.isfinite(loss)
        seconds = (time.perf_counter() - began) / real
        noise, scales = self.target.noise_activation, self.target.scales.numpy()
        alphas = [alpha_map(a) for a in self.attribution.numpy()[:real]] if self.settings.alpha else [None] * real
        return [FilterResult(int(items[i]), pixels[i], float(activation[i]), float(noise[items[i]]),
                             float(loss[i]), float(tv[i]), float(lp[i]), int(ran[i]), seconds,
                             float(scales[items[i]]), bool(finite[i]), tuple(frame[i] for frame in frames),
                             float(peak[i]), alpha=alphas[i], lead=float(peak[i]) if self.target.classes else None)
                for i in range(real)]

    def _optimize(self, real: int, progress) -> tuple[np.ndarray, list]:
        """Run the loaded batch in chunks of steps; returns (steps each image ran, frames)."""
        ran = np.zeros(self.batch, np.int64)
        active = np.ones(self.batch, bool)
        previous = None
        done = 0
        frames = [self._snapshot()] if self.settings.gif else []
        while done < self.settings.steps and active[:real].any():
            chunk = min(DEFAULT_CHUNK, self.settings.steps - done)
            loss = self.steps(tf.constant(chunk, tf.int32)).numpy() / chunk
            ran[active] += chunk
            done += chunk
            if progress:
                progress(chunk * int(active[:real].sum()))
            if self.settings.early_stop > 0:
                if previous is not None and done >= MIN_EARLY_STOP_STEPS:
                    active &= ~plateaued(previous, loss, self.settings.early_stop)
                    self.active.assign(active.astype(np.float32))
                previous = loss
            if self.settings.gif:
                frames.append(self._snapshot())
        if progress and done < self.settings.steps:
            progress((self.settings.steps - done) * real)  # steps saved by early stopping
        return ran, frames

    def _snapshot(self) -> np.ndarray:
        """[batch, H, W, C] uint8 images as they are now (one host transfer; only between chunks)."""
        return to_uint8(np.nan_to_num(self.param.to_image(self.params).numpy()))


def _adam(params, m, v, grad, t, rate):
    """One Adam update: (params, m, v) -> new (params, m, v); `rate` broadcasts over params. (Not XLA:
    XLA runs these element-wise ops on one CPU thread, twice as slow in wall time on 2 cores.)"""
    m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad
    v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad)
    m_hat = m / (1 - ADAM_BETA1 ** t)
    v_hat = v / (1 - ADAM_BETA2 ** t)
    return params - rate * m_hat / (tf.sqrt(v_hat) + ADAM_EPSILON), m, v


CHAINS = 2  # a batch runs as this many independent chains of images (see chain_bounds)
# A chain's step is a function that is not inlined into the loop of `steps`: TensorFlow's oneDNN graph
# rewrite visits a graph's nodes in DFS order, which in a loop (a graph with cycles) can reach a
# MaxPoolGrad before its MaxPool, and then leaves that gradient on TensorFlow's own kernel rather than
# oneDNN's; the two add up the gradients of overlapping pooling windows (3x3, stride 2) in different
# orders. The order depends on where the graph's edges happen to lie in memory, so every trace (and
# run) picked its own kernels, and the pictures of fer's or ONet's classes differed from run to run
# and --batch to --batch. A step's own graph has no cycle: every MaxPool comes before its gradient.
NO_INLINE = {"_noinline": True}


def chain_bounds(batch: int, chains: int = CHAINS, group: int = 1) -> tuple[tuple[int, int], ...]:
    """[(start, stop)] of the chains a batch of `batch` images runs as: `chains` (at most one per group
    of `group` images, which stay in one chain) slices of near-equal size. Chains share nothing within a chunk of steps, so TensorFlow runs one
    chain's passes while the other's wait for the step before: on a 2-core CPU, 2 chains ran 5-13%
    faster than one (VGG16 block1_conv2 to block5_conv3, 96-224 px, batches 4 and 16). Each image's
    numbers do not depend on how many images share its pass (see exact.py), so neither do the pictures."""
    groups = batch // group
    count = max(1, min(chains, groups))
    edges = [i * groups // count * group for i in range(count + 1)]
    return tuple(zip(edges[:-1], edges[1:]))


def plateaued(previous: np.ndarray, current: np.ndarray, tolerance: float) -> np.ndarray:
    """[B] bool: the mean loss per step fell by less than `tolerance` times its size (at least 1) from
    one chunk to the next. Losses are in units of each filter's typical response (see the module doc)."""
    return previous - current < tolerance * np.maximum(np.abs(current), 1.0)
