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

from . import objectives, transforms
from .params import Pixels

ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
DEFAULT_CHUNK = 16  # steps per tf.function call: the progress bar updates this often
CONVERGENCE_RATIO = 2.0  # converged: activation at least this times its activation on uniform noise...
CONVERGENCE_FLOOR = 1e-6  # ...and above this share of the filter's typical response (above 0 beyond rounding)
RESCUE_FLOOR = 1e-3  # a converged filter below this share of its typical response is still rescued (`strong`)
START_THRESHOLD = 0.1  # below this share of its scale a filter is started through its pre-activation
SCALE_IMAGES = 4  # noise images that measure each filter's typical response (and its noise activation)
MIN_EARLY_STOP_STEPS = 4 * DEFAULT_CHUNK  # early stopping never stops a filter before this many steps


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
    early_stop: float = 0.0  # stop a filter once its loss fell by less than this share over a chunk; 0: off
    transforms: str = transforms.DEFAULT_TRANSFORMS
    objective: str = objectives.DEFAULT_OBJECTIVE
    frames: bool = False  # keep a snapshot of every image at each chunk boundary (for --gif)


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
    peak: float = float("nan")  # highest pre-activation of the filter's units (centre unit: neuron) on `image`;
    # after a rescue, on every image and start tried (see rescue.py)
    dead: bool = False  # set by a rescue: no image or start tried, noise included, drove `peak` above 0

    @property
    def converged(self) -> bool:
        """Finite, above 0 and at least CONVERGENCE_RATIO times what uniform noise gives."""
        return (self.finite and self.activation > CONVERGENCE_FLOOR * self.scale
                and self.activation >= CONVERGENCE_RATIO * self.noise_activation)

    @property
    def strong(self) -> bool:
        """Converged, and clearly so: above RESCUE_FLOOR of the filter's typical response. The rescue
        reruns filters that are not (a filter can fire only in a few places and be worth another try)."""
        return self.converged and self.activation > RESCUE_FLOOR * self.scale


def filter_key(seed: int, index: int) -> int:
    """The random stream of one filter: depends on the run's seed and the filter, never on the batch."""
    return (seed * 1_000_003 + index * 7_919 + 1) % (2**31 - 1)


def noise_images(keys, image_shape) -> np.ndarray:
    """Uniform noise over the whole [0, 1] range, one image [H, W, C] per key: the convergence baseline."""
    return np.stack([np.random.default_rng([key, 1]).uniform(0.0, 1.0, tuple(image_shape)) for key in keys]
                    ).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8, rounded."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


class Renderer:
    """Optimizes `batch` images at a time against a `graph.Cut` (input -> target layer).

    `image_shape` is (height, width, channels); `preprocess` maps images in [0, 1] to model input.
    Create one per layer; call `render` per batch.
    """

    def __init__(self, cut, preprocess, image_shape, batch: int, settings: Settings, param=None):
        self.cut, self.activation, self.preprocess = cut, cut.activation, preprocess
        self.image_shape, self.batch, self.settings = tuple(image_shape), batch, settings
        self.param = param or Pixels(self.image_shape)
        self.transform = transforms.build(settings.transforms, settings.jitter)
        self.objective = objectives.class_margin if cut.classes else objectives.get(settings.objective)
        shape = [batch, *self.param.shape]
        self.params = tf.Variable(tf.zeros(shape), name="params")
        self.m = tf.Variable(tf.zeros(shape), trainable=False)
        self.v = tf.Variable(tf.zeros(shape), trainable=False)
        self.t = tf.Variable(0.0, trainable=False)
        self.filters = tf.Variable(tf.zeros([batch], tf.int32), trainable=False)
        self.keys = tf.Variable(tf.zeros([batch], tf.int32), trainable=False)
        self.finite = tf.Variable(tf.ones([batch], tf.bool), trainable=False)  # sticky, per image
        self.active = tf.Variable(tf.ones([batch]), trainable=False)  # 0 once a filter has stopped early
        self.chains = chain_bounds(batch)
        scales, noise = self._noise_statistics()
        self.scales, self.noise_activation = tf.constant(scales), noise
        # Multiplied, not divided: the gradient of a division by a [B] vector can round differently
        # at different batch sizes (see exact.py), a multiplication cannot.
        self.inverse_scales = tf.constant(1.0 / scales)
        elementwise = not cut.classes and _is_elementwise(cut.activation, (None, *cut.output_shape))
        # (sliced for one filter: the model runs on each image alone, see _per_image)
        self.own = own_channel(cut, 1) if elementwise else None

    def _noise_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per filter [C]: the standard deviation of its pre-activation over noise images (never 0), and
        its activation (the spatial mean of its output) averaged over the same images."""
        keys = [filter_key(self.settings.seed, -1 - i) for i in range(SCALE_IMAGES)]
        pre = self.cut.forward(self.preprocess(tf.constant(noise_images(keys, self.image_shape))))
        std = tf.math.reduce_std(tf.reshape(pre, [-1, pre.shape[-1]]), axis=0).numpy()
        finite = np.isfinite(std)  # a NaN/Inf filter must not spoil the others' floor
        floor = max(float(std[finite].mean()) if finite.any() else 0.0, 1e-6) * 1e-3
        if self.cut.classes:  # each class's margin over the noise images
            classes = tf.range(pre.shape[-1])
            noise = np.mean([objectives.class_margin(tf.repeat(pre[i:i + 1], pre.shape[-1], 0), classes).numpy()
                             for i in range(pre.shape[0])], axis=0)
        else:
            post = self.activation(pre)
            noise = tf.reduce_mean(tf.reshape(post, [-1, post.shape[-1]]), axis=0).numpy()
        return np.maximum(np.where(finite, std, floor), floor).astype(np.float32), noise.astype(np.float32)

    @staticmethod
    def _per_image(function, inputs, filters):
        """`function(inputs, filters)` -> a tuple of [b] values, computed on each image alone (a batch of
        one) and concatenated. A CPU computes a convolution or matmul as one matrix product over all the
        batch's pixels, whose last rows (and the rows where the threads' shares meet) can take another
        code path (AVX2: a multiply and an add instead of a fused multiply-add); which rows those are
        depends on the batch size and the image's place in it. One image per pass keeps every image's
        numbers, forward and backward, independent of its batch; the passes are independent, so
        TensorFlow still runs them side by side."""
        parts = [function(inputs[i:i + 1], filters[i:i + 1]) for i in range(inputs.shape[0])]
        return tuple(tf.concat(values, axis=0) for values in zip(*parts))

    def _objective(self, inputs, filters):
        """Model input [b, H, W, C], filters [b] -> (activation, start), [b] each: each image's own
        filter as the layer gives it, and the softened objective that starts a silent filter (see
        objectives.started). Classes are their margin (objectives.class_margin), which needs no start.
        Each image runs through the model alone (see _per_image)."""
        return self._per_image(self._objective_of, inputs, filters)

    def _objective_of(self, inputs, filters):
        """_objective of a batch as one model pass."""
        threshold = START_THRESHOLD * tf.gather(self.scales, filters)
        if self.own is not None:
            pre = self.own(inputs, filters)  # [b, ..., 1]: only each image's own filter
            own_filter = tf.zeros(tf.shape(filters), tf.int32)  # its index within that slice
            post = self.objective(self.activation(pre), own_filter)
            start = objectives.start_objective(self._startable(pre), own_filter, threshold)
        elif self.cut.classes:
            post = self.objective(self.cut.forward(inputs), filters)
            return post, post
        else:  # an activation mixing channels: run it on every filter
            pre = self.cut.forward(inputs)
            post = self.objective(self.activation(pre), filters)
            start = objectives.start_objective(self._startable(pre), filters, threshold)
        return post, start

    def _startable(self, pre):
        """The units a silent filter's start follows: the centre one for `neuron`, else all."""
        return objectives.centre(pre) if self.settings.objective == "neuron" else pre

    def _terms(self, images, activation):
        """Loss, TV and Lp per image, [B] each (values only: no gradient, so nothing is compiled)."""
        s = self.settings
        tv, lp = objectives.total_variation(images), lp_norm(images, s.lp_norm)
        loss = -activation * tf.gather(self.inverse_scales, self.filters) + s.tv_weight * tv + s.lp_weight * lp
        return loss, tv, lp

    def _penalty(self, images):
        """The weighted regularizers per image, [B] (only the silent-filter start goes without them)."""
        s = self.settings
        tv, lp = penalties(images, s.lp_norm)
        return s.tv_weight * tv + s.lp_weight * lp

    @tf.function(reduce_retracing=True)
    def _run(self, steps):
        """`steps` optimization steps of the whole batch; returns each image's loss summed over them, [B].

        The batch runs as independent chains (see CHAINS): each carries its images' parameters, Adam
        moments and flags through the loop, and the variables are read before and written after it.
        """
        t0 = self.t.read_value()
        filters, keys = self.filters.read_value(), self.keys.read_value()
        rates = self.settings.lr * self.active.read_value()  # 0 for a filter that stopped early
        params, m, v, finite = (var.read_value() for var in (self.params, self.m, self.v, self.finite))
        chains = tuple((params[a:b], m[a:b], v[a:b], finite[a:b], tf.zeros([b - a])) for a, b in self.chains)

        def body(i, chains):
            t = t0 + tf.cast(i, tf.float32)
            return i + 1, tuple(self._step(*chain, t, filters[a:b], keys[a:b], rates[a:b])
                                for chain, (a, b) in zip(chains, self.chains))

        _, chains = tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), chains))
        params, m, v, finite, total_loss = (tf.concat(parts, axis=0) for parts in zip(*chains))
        self.params.assign(params)
        self.m.assign(m)
        self.v.assign(v)
        self.finite.assign(finite)
        self.t.assign(t0 + tf.cast(steps, tf.float32))
        return total_loss

    def _step(self, params, m, v, finite, total_loss, t, filters, keys, rates):
        """One step of one chain at step count `t` (steps done before it): its new
        (params, m, v, finite, total_loss)."""
        s = self.settings
        with tf.GradientTape() as tape:
            tape.watch(params)
            images = self.param.to_image(params)
            seen = images if self.transform is None else self.transform(images, keys, tf.cast(t, tf.int32))
            post, start = self._objective(self.preprocess(seen), filters)
            threshold = START_THRESHOLD * tf.gather(self.scales, filters)
            target = objectives.started(post, start, threshold)
            loss = -target * tf.gather(self.inverse_scales, filters)
            if s.tv_weight or s.lp_weight:  # the defaults need neither, nor their gradients
                loss += tf.cast(post > threshold, tf.float32) * self._penalty(images)
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, params)
        finite &= tf.math.is_finite(loss) & tf.reduce_all(tf.math.is_finite(grad), axis=list(range(1, len(grad.shape))))
        rate = tf.reshape(rates, [-1] + [1] * (len(params.shape) - 1))
        params, m, v = _adam(params, m, v, grad, t + 1.0, rate)
        return self.param.project(params), m, v, finite, total_loss + loss

    @tf.function(reduce_retracing=True)
    def _measure(self, images):
        """Activation, loss terms and peak pre-activation of each image as it is, no transform. [B] each."""
        activation, _ = self._objective(self.preprocess(images), self.filters)
        loss, tv, lp = self._terms(images, activation)
        (peak,) = self._per_image(lambda x, f: (self._peak(x, f),), self.preprocess(images), self.filters)
        return activation, loss, tv, lp, peak

    def _peak(self, inputs, filters):
        """Model input [b, H, W, 3], filters [b] -> [b]: the highest pre-activation of each image's own
        filter over the units its objective sees (see _startable); for classes, the class margin."""
        if self.cut.classes:
            return self.objective(self.cut.forward(inputs), filters)
        if self.own is not None:
            pre, index = self.own(inputs, filters), tf.zeros(tf.shape(filters), tf.int32)
        else:
            pre, index = self.cut.forward(inputs), filters
        values = tf.gather(self._startable(pre), index, axis=-1, batch_dims=1)
        return tf.reduce_max(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)

    def render(self, filters: list[int], starts: list[np.ndarray] | None = None, progress=None) -> list[FilterResult]:
        """Optimize one batch of up to `batch` filters; `starts` are optional start images in [0, 1].

        `progress(n)` is called with the number of filter-steps done after each chunk. With
        `settings.early_stop`, a filter whose loss fell by less than that share of its size over a
        chunk keeps its image from then on (its `steps` tell when it stopped); the batch ends when
        every filter has stopped.
        """
        began = time.perf_counter()
        real = len(filters)
        padded = list(filters) + [filters[-1]] * (self.batch - real)
        keys = [filter_key(self.settings.seed, f) for f in padded]
        if starts is None:
            init = [self.param.init(np.random.default_rng([k, 0])) for k in keys]
        else:
            init = [self.param.from_image(img) for img in list(starts) + [starts[-1]] * (self.batch - real)]
        self.filters.assign(padded)
        self.keys.assign(keys)
        self.params.assign(np.stack(init))
        for variable in (self.m, self.v):
            variable.assign(tf.zeros_like(variable))
        self.t.assign(0.0)
        self.finite.assign(tf.ones_like(self.finite))
        self.active.assign(tf.ones([self.batch]))
        ran = np.zeros(self.batch, np.int64)
        active = np.ones(self.batch, bool)
        previous = None
        done = 0
        frames = [self._snapshot()] if self.settings.frames else []
        while done < self.settings.steps and active[:real].any():
            chunk = min(DEFAULT_CHUNK, self.settings.steps - done)
            loss = self._run(tf.constant(chunk, tf.int32)).numpy() / chunk
            ran[active] += chunk
            done += chunk
            if progress:
                progress(chunk * int(active[:real].sum()))
            if self.settings.early_stop > 0:
                if previous is not None and done >= MIN_EARLY_STOP_STEPS:
                    active &= ~plateaued(previous, loss, self.settings.early_stop)
                    self.active.assign(active.astype(np.float32))
                previous = loss
            if self.settings.frames:
                frames.append(self._snapshot())
        if progress and done < self.settings.steps:
            progress((self.settings.steps - done) * real)  # steps saved by early stopping
        floats = self.param.to_image(self.params).numpy()
        pixels = to_uint8(np.nan_to_num(floats))
        activation, loss, tv, lp, peak = (t.numpy() for t in self._measure(tf.constant(pixels, tf.float32) / 255.0))
        finite = self.finite.numpy() & np.isfinite(floats).all(axis=(1, 2, 3)) & np.isfinite(loss)
        seconds = (time.perf_counter() - began) / real
        return [FilterResult(int(filters[i]), pixels[i], float(activation[i]), float(self.noise_activation[filters[i]]),
                             float(loss[i]), float(tv[i]), float(lp[i]), int(ran[i]), seconds,
                             float(self.scales[filters[i]]), bool(finite[i]), tuple(frame[i] for frame in frames),
                             float(peak[i]))
                for i in range(real)]

    def _snapshot(self) -> np.ndarray:
        """[batch, H, W, 3] uint8 images as they are now (one host transfer; only between chunks)."""
        return to_uint8(np.nan_to_num(self.param.to_image(self.params).numpy()))


def penalties(images, p: float):
    """(objectives.total_variation, objectives.lp_norm) of `images` [B, H, W, 3], [B] each, with their
    gradient. Both and their gradients are computed in one XLA-compiled function: unfused, these
    image-sized element-wise ops cost as much as a small conv layer on a CPU."""

    @tf.custom_gradient
    def apply(images):
        tv, lp, tv_grad, lp_grad = _penalties_with_gradients(images, float(p))

        def grad(d_tv, d_lp):
            return _combine(d_tv, tv_grad, d_lp, lp_grad)

        return (tv, lp), grad

    return apply(images)


@tf.function(jit_compile=True, reduce_retracing=True)
def _penalties_with_gradients(images, p: float):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        tv = objectives.total_variation(images)
        lp = lp_norm(images, p)
    return tv, lp, tape.gradient(tv, images), tape.gradient(lp, images)


def lp_norm(images, p: float):
    """objectives.lp_norm, with a whole `p` (the default 6) raised by repeated multiplication: the same
    value, three times faster than a general power (measured under XLA on a CPU)."""
    if float(p) != int(p) or not 1 <= p <= 64:
        return objectives.lp_norm(images, p)
    centred = tf.abs(2.0 * (images - 0.5)) + 1e-8
    power, base, exponent = None, centred, int(p)
    while exponent:
        if exponent & 1:
            power = base if power is None else power * base
        base, exponent = base * base, exponent >> 1
    return tf.reduce_mean(power, axis=[1, 2, 3]) ** (1.0 / p)


def _adam(params, m, v, grad, t, rate):
    """One Adam update: (params, m, v) -> new (params, m, v); `rate` broadcasts over params. (Not XLA:
    XLA runs these element-wise ops on one CPU thread, twice as slow in wall time on 2 cores.)"""
    m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad
    v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad)
    m_hat = m / (1 - ADAM_BETA1 ** t)
    v_hat = v / (1 - ADAM_BETA2 ** t)
    return params - rate * m_hat / (tf.sqrt(v_hat) + ADAM_EPSILON), m, v


def _combine(d_tv, tv_grad, d_lp, lp_grad):
    # Not XLA: compiled, a * b + c * d becomes fused multiply-adds on whole SIMD vectors but not on the
    # values left over at the end, so an image's gradient would depend on the batch (see exact.py).
    return tf.reshape(d_tv, [-1, 1, 1, 1]) * tv_grad + tf.reshape(d_lp, [-1, 1, 1, 1]) * lp_grad


CHAINS = 2  # a batch runs as this many independent chains of images (see chain_bounds)


def chain_bounds(batch: int, chains: int = CHAINS) -> tuple[tuple[int, int], ...]:
    """[(start, stop)] of the chains a batch of `batch` images runs as: `chains` (at most one per image)
    slices of near-equal size. Chains share nothing within a chunk of steps, so TensorFlow runs one
    chain's passes while the other's wait for the step before: on a 2-core CPU, 2 chains ran 5-13%
    faster than one (VGG16 block1_conv2 to block5_conv3, 96-224 px, batches 4 and 16). Each image's
    numbers do not depend on how many images share its pass (see exact.py), so neither do the pictures."""
    count = max(1, min(chains, batch))
    edges = [i * batch // count for i in range(count + 1)]
    return tuple(zip(edges[:-1], edges[1:]))


def plateaued(previous: np.ndarray, current: np.ndarray, tolerance: float) -> np.ndarray:
    """[B] bool: the mean loss per step fell by less than `tolerance` times its size (at least 1) from
    one chunk to the next. Losses are in units of each filter's typical response (see the module doc)."""
    return previous - current < tolerance * np.maximum(np.abs(current), 1.0)


def _is_elementwise(activation, shape) -> bool:
    """True when `activation` maps each value on its own (ReLU, GELU, ...), so that it can run on one
    filter's slice; False when a value depends on other filters (softmax over channels) or the
    activation is a layer with weights of its own (PReLU: one slope per channel, not per slice)."""
    if getattr(activation, "weights", None):
        return False
    channels = int(shape[-1]) if shape[-1] else 2
    values = tf.random.stateless_normal([2] + [3] * (len(shape) - 2) + [max(channels, 2)], [7, 11]) * 3.0
    nudged = values + tf.one_hot(0, max(channels, 2)) * 1.5
    try:
        a, b = np.asarray(activation(values)), np.asarray(activation(nudged))
    except Exception:  # an activation that cannot take this shape
        return False
    return bool(np.allclose(a[..., 1:], b[..., 1:], rtol=0, atol=1e-6))


def own_channel(cut, batch: int):
    """A function (model input [B, H, W, C], filters [B] int) -> each image's own filter's pre-activation,
    [B, ..., 1] (the layer's spatial axes kept).

    When the cut is a graph (`cut.model`) ending in a plain float32 Conv2D with at least twice `batch`
    filters, its kernel is sliced to the batch's filters: the layer computes `batch` channels per image
    instead of all of them, and the image's own one is kept. Otherwise the full layer runs and the own
    filter is picked out.
    """
    import keras

    model = cut.model
    last = model.layers[-1] if model is not None else None
    if (type(last) is keras.layers.Conv2D and last.groups == 1 and last.data_format == "channels_last"
            and last.compute_dtype == "float32" and last.filters >= 2 * batch):
        try:
            prefix = keras.Model(model.inputs, last.input)
        except (ValueError, AttributeError):  # the layer is called more than once
            prefix = None
        if prefix is not None:
            return _sliced_conv(lambda images: prefix(cut.feed(images), training=False), last)

    def pick(inputs, filters):
        return tf.gather(cut.forward(inputs), filters[:, None], axis=-1, batch_dims=1)

    return pick


def _sliced_conv(prefix, conv):
    strides, dilations, padding = list(conv.strides), list(conv.dilation_rate), conv.padding.upper()

    def sliced(inputs, filters):
        features = prefix(inputs)
        kernel = tf.gather(conv.kernel, filters, axis=3)  # [kh, kw, in, B]
        out = tf.nn.convolution(features, kernel, strides=strides, padding=padding, dilations=dilations)
        own = tf.gather(out, tf.range(tf.shape(out)[0])[:, None], axis=3, batch_dims=1)  # image b, filter b
        if conv.use_bias:
            own += tf.reshape(tf.gather(conv.bias, filters), [-1, 1, 1, 1])
        return own

    return sliced


def estimate_seconds(seconds_per_step: float, filters: int, batch: int, steps: int) -> float:
    """Seconds a layer takes: `seconds_per_step` is one step of a whole batch."""
    return seconds_per_step * steps * -(-filters // batch)
