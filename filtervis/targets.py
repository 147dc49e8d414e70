"""What the optimizer loop maximizes, compiled for a batch: each image's objective, the start that
wakes a silent filter, the regularizer weights, and each objective's typical response to noise.

Two kinds, with one interface (`Target`):

- `LayerFilters`: one filter (or class) of one layer per image, the layer cut once (`graph.Cut`).
  This is `filtervis run`'s path and the fast one: with an element-wise activation, only each image's
  own filter is computed (a sliced Conv2D, see `models.own_channel`). Items are filter indices.
- `ObjectiveBatch`: any `objectives.Objective` per image, over one or more layers (each cut on its
  own). Items are the objectives' places in the batch.

A target's `objective(inputs, items)` runs one model pass over a batch; the Renderer calls it for
each image alone (see models.per_image).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import tensorflow as tf

from . import measures
from .models import batched_passes, is_elementwise, own_channel
from . import objectives as obj
from .errors import SpecError

START_THRESHOLD = 0.1  # below this share of its scale a filter is started through its pre-activation
SCALE_IMAGES = 4  # noise images that measure each filter's typical response (and its noise activation)
RANGE_WEIGHT = 20.0  # the penalty on colour out of range (measures.range_excess), in units of the filter's scale:
# VGG16 hed block3_conv1 at 224 px, 8 filters: clipped colour from 4.4% to 0.0% (median), activation 0.8% lower
DIVERSITY_SHARE = 6.0  # --diversity: the penalty is this times the objective's size times the mean Gram
# cosine to the filter's other pictures (held fixed: each picture moves itself away from them)...
DIVERSITY_GATE = (0.5, 0.75)  # ...in full while the picture's activation is at least the second share of its
# filter's best picture's, fading to none at the first, so no picture gives up its filter to be different


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


def _spread(pre) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of `pre` [N, ..., C]: (standard deviation over images and places, never below a
    floor of 1e-3 of the layer's mean one (finite ones only); whether it was finite)."""
    std = tf.math.reduce_std(tf.reshape(pre, [-1, pre.shape[-1]]), axis=0).numpy()
    finite = np.isfinite(std)  # a NaN/Inf filter must not spoil the others' floor
    floor = max(float(std[finite].mean()) if finite.any() else 0.0, 1e-6) * 1e-3
    return np.maximum(np.where(finite, std, floor), floor).astype(np.float32), finite


def as_target(target, preprocess, image_shape, settings):
    """`target` as it is, or a graph.Cut made into the LayerFilters of `settings` (objective, seed,
    tv_weight, lp_weight, lp_norm, diversity) with the colour range, as `filtervis run` renders it."""
    if isinstance(target, (LayerFilters, ObjectiveBatch)):
        return target
    return LayerFilters(target, preprocess, image_shape, settings.objective, settings.seed, settings.tv_weight,
                        settings.lp_weight, settings.lp_norm, diversity=DIVERSITY_SHARE if settings.diversity > 1 else 0.0,
                        colour_range=RANGE_WEIGHT)


def fires(target, items, post):
    """[b]: 1.0 where an image's objective fires (`post` above START_THRESHOLD of its scale), else 0.0.
    The image terms (TV, the Lp norm, the colour range) apply only then: a silent filter's start is
    left to find it first."""
    return tf.cast(post > START_THRESHOLD * tf.gather(target.scales, items), tf.float32)


def loss(target, images, items, post, start, maps=None, group: int = 1, regularizers=None, colour_weights=None,
         logits=None):
    """What the optimizer minimizes for each image of a batch, [b]: the sum of its objective's terms as
    compiled.

    - the objective (`post`, softened into `start` while the filter is silent, see measures.started),
      negated and in units of the filter's typical response (`target.inverse_scales`);
    - its diversity term (`target.diversity`, the term's weight negated) with `group` > 1 (consecutive
      groups of pictures of one filter): the pictures' Gram similarity to the others of their group
      (`maps`: each image's feature maps), held fixed, `target.diversity` times the objective's size,
      gated by DIVERSITY_GATE;
    - its colour-range term with `colour_weights` (the terms' weights negated, per item; given for a
      sigmoid parameterization, with the images' `logits`): the weight times the colour out of range
      (measures.logit_excess: it reaches the parameters without passing through `images`, so the
      gradient of the loss by the images leaves it out);
    - with `regularizers` ((tv weights, lp weights, p) per item), TV and the Lp norm of `images`.

    The image terms apply once the objective fires (see fires)."""
    threshold = START_THRESHOLD * tf.gather(target.scales, items)
    value = -measures.started(post, start, threshold) * tf.gather(target.inverse_scales, items)
    if group > 1 and target.diversity:  # the pictures of one filter repel each other
        size = tf.stop_gradient(tf.abs(value))
        gate = measures.gate(measures.share_of_best(post, group), *DIVERSITY_GATE)
        value += gate * target.diversity * size * measures.gram_similarity(maps, group, fixed=True)
    fired = fires(target, items, post) if colour_weights is not None or regularizers is not None else None
    if colour_weights is not None:
        value += colour_penalty(logits, tf.gather(colour_weights, items), fired)
    if regularizers is not None:  # the defaults need neither TV nor Lp, nor their gradients
        tv_weights, lp_weights, p = regularizers
        penalty = measures.penalty(images, tf.gather(tv_weights, items), tf.gather(lp_weights, items), p)
        value += fired * penalty
    return value


def colour_penalty(logits, weights, fired):
    """[b]: `weights` times each image's colour out of range (measures.logit_excess of its values'
    `logits`) where its objective fires (`fired`, see fires). For sigmoid parameterizations only: on clipped pixels the
    logit's gradient grows without bound near 0 and 1 and fights the objective (a filter that wants
    white then fell short of converging)."""
    return fired * weights * measures.logit_excess(logits)


# --- objectives compiled ---------------------------------------------------------------------------

def unit_goals(layer: str, indices, kind: str, classes: bool, tv_weight: float = 0.0, lp_weight: float = 0.0,
               lp_norm: float = 6.0, diversity: int = 1) -> list:
    """What `filtervis run` renders for a layer, as objectives: per filter its channel (the spatial mean),
    its neuron (the centre unit) with `kind` "neuron", or its class margin on a layer of classes, minus
    the regularizers (--tv-weight, --lp-weight, --lp-norm), minus RANGE_WEIGHT times the colour range,
    and with `diversity` (--diversity) above 1 minus DIVERSITY_SHARE times the layer's diversity."""
    if classes:
        make = obj.class_logit
    else:
        make = obj.neuron if kind == "neuron" else obj.channel
    extra = ranged(obj.Objective(()))
    if diversity > 1:
        extra = extra - DIVERSITY_SHARE * obj.diversity(layer)
    return [obj.regularized(make(layer, int(i)), tv_weight, lp_weight, lp_norm) + extra for i in indices]


def ranged(goal):
    """`goal` with the colour range: minus RANGE_WEIGHT times objectives.colour_range() unless it has a
    colour-range term of its own (what `render` renders)."""
    if any(isinstance(t, obj.ColourRange) for _, t in goal.parts):
        return goal
    return goal - RANGE_WEIGHT * obj.colour_range()


@dataclasses.dataclass(frozen=True)
class PerFilter:
    """Objectives that are one filter each of one layer, alike but for the filter: the form `LayerFilters`
    renders (`indices`: each objective's filter, in order)."""

    layer: str
    kind: str  # "channel" or "neuron" (a class margin is rendered as its layer's "channel")
    indices: tuple[int, ...]
    tv_weight: float
    lp_weight: float
    lp_norm: float | None  # None: no Lp term
    colour_range: float = 0.0  # the colour-range term's weight, negated (0: none)
    diversity: float = 0.0  # the diversity term's weight, negated (0: none); it reads `layer`


def per_filter(goals, cuts: dict) -> PerFilter | None:
    """The PerFilter form of `goals`, or None when they are not of it: each goal is one term of weight 1
    (a channel, a neuron at the centre, or a class margin on a layer of classes), all of one kind on
    one layer, each of another filter, with the same image terms (TV, Lp, colour range) and the same
    diversity term, if any, on that layer."""
    firsts = [goal.layer_parts for goal in goals]
    if not goals or any(len(parts) != 1 or parts[0][0] != 1.0 for parts in firsts):
        return None
    terms = [parts[0][1] for parts in firsts]
    layer, kind = terms[0].layer, type(terms[0])
    if (any(t.layer != layer or type(t) is not kind for t in terms) or layer not in cuts
            or len({t.index for t in terms}) < len(terms)):
        return None
    classes = bool(cuts[layer].classes)
    if kind is obj.ClassLogit:
        if not classes or not all(t.margin for t in terms):
            return None
    elif classes or kind not in (obj.Channel, obj.Neuron) or any(
            isinstance(t, obj.Neuron) and (t.y is not None or t.x is not None) for t in terms):
        return None
    image_parts = {goal.image_parts for goal in goals}
    group_parts = {goal.group_parts for goal in goals}
    if len(image_parts) != 1 or len(group_parts) != 1:
        return None
    shared = goals[0].group_parts
    if len(shared) > 1 or any(not isinstance(t, obj.Diversity) or t.layer != layer for _, t in shared):
        return None
    tv, lp = _regularizer_weights(goals[0])
    ps = [t.p for _, t in goals[0].image_parts if isinstance(t, obj.LpNorm)]
    return PerFilter(layer, "neuron" if kind is obj.Neuron else "channel", tuple(t.index for t in terms), tv, lp,
                     ps[0] if ps else None, _colour_weight(goals[0]), float(-sum(w for w, _ in shared)))


def compile_layer(goals, cuts: dict, preprocess, image_shape, seed: int, lp_norm: float = 6.0):
    """(LayerFilters, PerFilter) of `goals` in the per-filter form (see per_filter): the fast path, where
    only each image's own filter is computed; None when they are not of that form (they then run as
    ObjectiveBatch, batch by batch). `lp_norm` is the p the pictures' Lp norm is measured with when
    the goals have no Lp term."""
    form = per_filter(goals, cuts)
    if form is None:
        return None
    target = LayerFilters(cuts[form.layer], preprocess, image_shape, form.kind, seed, form.tv_weight, form.lp_weight,
                          lp_norm if form.lp_norm is None else form.lp_norm, form.diversity, form.colour_range)
    return target, form


class LayerFilters:
    """One filter of one cut per image: `kind` is "channel" (the filter's mean) or "neuron" (its
    centre unit); a cut whose units are classes (`cut.classes`) is rendered by class margin. The
    objectives' other terms, the same for every filter, are weights: `tv_weight`, `lp_weight` (minus
    the TV and Lp terms' weights), `diversity` and `colour_range` (likewise, 0: no such term)."""

    def __init__(self, cut, preprocess, image_shape, kind: str, seed: int, tv_weight: float = 0.0,
                 lp_weight: float = 0.0, lp_norm: float = 6.0, diversity: float = 0.0, colour_range: float = 0.0):

        self.cut, self.preprocess, self.kind = cut, preprocess, kind
        self.probing = False  # True: the objective is probe_objective (see probe)
        self.tv_weight, self.lp_weight, self.lp_norm = float(tv_weight), float(lp_weight), float(lp_norm)
        self.diversity, self.colour_range = float(diversity), float(colour_range)
        self.measure = measures.class_margin if cut.classes else measures.LAYER_MEASURES[kind]
        elementwise = not cut.classes and is_elementwise(cut.activation, (None, *cut.output_shape))
        # (sliced to the filters of a pass: one image's, see models.per_image, or with
        # models.batched_passes a chain's, each image keeping its own)
        self.own = own_channel(cut, 1) if elementwise else None
        self.batched = batched_passes(cut)  # a step computes a chain's images in one pass
        # a cut computing in a lower type (--precision) is measured in float32: its scales, noise
        # activation, and (optimize.Renderer.measure) each finished picture's numbers
        self.exact = None if cut.exact is None else LayerFilters(cut.exact, preprocess, image_shape, kind, seed,
                                                                 tv_weight, lp_weight, lp_norm, diversity,
                                                                 colour_range)
        if self.exact is None:
            scales, self.noise_activation = self._noise_statistics(seed, image_shape)
        else:
            scales, self.noise_activation = self.exact.scales.numpy(), self.exact.noise_activation
        self.scales = tf.constant(scales)
        # Multiplied, not divided: the gradient of a division by a [B] vector can round differently
        # at different batch sizes (see exact.py), a multiplication cannot.
        self.inverse_scales = tf.constant(1.0 / scales)

    @property
    def count(self) -> int:
        return self.cut.filters

    @property
    def classes(self) -> bool:
        """True when the filters are classes: their pictures are judged by the class they are put in."""
        return bool(self.cut.classes)

    def regularizers(self) -> tuple:
        """(tv weights [count], lp weights [count], p): the objectives' TV and Lp terms (the same for
        every filter)."""
        return (tf.fill([self.count], self.tv_weight), tf.fill([self.count], self.lp_weight), self.lp_norm)

    def colour_weights(self):
        """[count]: the colour-range term's weight (negated) of each filter's objective."""
        return tf.fill([self.count], self.colour_range)

    def with_regularizers(self, tv_weight: float, lp_weight: float) -> "LayerFilters":
        """The same filters (cut, scales) with other TV and Lp weights (the rescue's passes)."""
        other = copy.copy(self)
        other.tv_weight, other.lp_weight = float(tv_weight), float(lp_weight)
        return other

    def probe(self) -> "LayerFilters":
        """The same filters (cut, scales) with the objective of the rescue's probe (see probe_objective)
        and no regularizers."""
        other = self.with_regularizers(0.0, 0.0)
        other.probing = True
        return other

    def _noise_statistics(self, seed, image_shape) -> tuple[np.ndarray, np.ndarray]:
        """Per filter [C]: the standard deviation of its pre-activation over noise images (never 0), and
        its activation (the spatial mean of its output) averaged over the same images."""
        pre = self.cut.forward(self.preprocess(tf.constant(scale_noise(seed, image_shape))))
        std, _ = _spread(pre)
        if self.cut.classes:  # each class's margin over the noise images
            noise = tf.reduce_mean(measures.class_margins(pre), axis=0).numpy()
        else:
            post = self.cut.activation(pre)
            noise = tf.reduce_mean(tf.reshape(post, [-1, post.shape[-1]]), axis=0).numpy()
        return std, noise.astype(np.float32)

    def objective(self, inputs, filters, slot: int = 0, features: bool = False):
        """Model input [b, H, W, C], filters [b] -> (activation, start), [b] each: each image's own
        filter as the layer gives it, and the softened objective that starts a silent filter (see
        measures.started). Classes are their margin, which needs no start. With `features`, also the
        feature maps of the same pass that --diversity compares ([b, h, w, c]: the layer's input when
        only the own filter is computed, else the layer's output)."""
        threshold = START_THRESHOLD * tf.gather(self.scales, filters)
        if self.probing:
            value = self.probe_objective(inputs, filters, threshold)
            return value, value
        if self.own is not None:
            pre, maps = self.own(inputs, filters, features=True)  # [b, ..., 1]: only each image's own filter
            own_filter = tf.zeros(tf.shape(filters), tf.int32)  # its index within that slice
            post = self.measure(self.cut.activation(pre), own_filter)
            start = measures.start_objective(self._startable(pre), own_filter, threshold)
        elif self.cut.classes:
            logits = self.cut.forward(inputs)
            post = self.measure(logits, filters)
            return (post, post, logits) if features else (post, post)
        else:  # an activation mixing channels: run it on every filter
            pre = self.cut.forward(inputs)
            maps = self.cut.activation(pre)
            post = self.measure(maps, filters)
            start = measures.start_objective(self._startable(pre), filters, threshold)
        return (post, start, maps) if features else (post, start)

    def probe_objective(self, inputs, filters, threshold):
        """What the rescue's probe climbs to find out whether a silent filter can fire, [b]: the
        pre-activation of each image's own filter at every unit, and once more at its centre unit, each
        softened as a silent filter's start is (measures.start_objective, at `threshold` [b]). The map's
        mean moves the whole image towards the filter's pattern, the centre unit rises faster than a mean
        whose places pull towards shifted copies of it: on VGG16 hed, either alone left filters silent
        that the other fired, their sum fired every one of them."""
        pre, index = self._own_pre(inputs, filters)
        return (measures.start_objective(pre, index, threshold)
                + measures.start_objective(measures.centre(pre), index, threshold))

    def _startable(self, pre):
        """The units a silent filter's start follows: the centre one for `neuron`, else all."""
        return measures.centre(pre) if self.kind == "neuron" else pre

    def peak(self, inputs, filters, slot: int = 0):
        """Model input [b, H, W, C], filters [b] -> [b]: the highest pre-activation of each image's own
        filter over the units its objective sees (see _startable); for classes, the class's lead over the
        runner-up (measures.class_lead: above 0 exactly when the model puts the image in its class)."""
        if self.cut.classes:
            return measures.class_lead(self.cut.forward(inputs), filters)
        return self._peak(*self._own_pre(inputs, filters))

    def activation_and_peak(self, inputs, filters, slot: int = 0):
        """(activation, peak), [b] each, from one pass: `objective`'s activation and `peak` (how a cut
        computing in a lower type is measured, in float32, see `exact`)."""
        if self.cut.classes:
            logits = self.cut.forward(inputs)
            return self.measure(logits, filters), measures.class_lead(logits, filters)
        pre, index = self._own_pre(inputs, filters)
        return self.measure(self.cut.activation(pre), index), self._peak(pre, index)

    def _own_pre(self, inputs, filters):
        """(pre-activations, each image's index into them): each image's own filter only ([b, ..., 1],
        index 0) when the layer is sliced (see models.own_channel), else the whole layer and `filters`."""
        if self.own is not None:
            return self.own(inputs, filters), tf.zeros(tf.shape(filters), tf.int32)
        return self.cut.forward(inputs), filters

    def _peak(self, pre, index):
        """[b]: the highest of each image's own filter's values over the units its objective sees."""
        values = tf.gather(self._startable(pre), index, axis=-1, batch_dims=1)
        return tf.reduce_max(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)

    def start_peaks(self, images) -> np.ndarray:
        """[N, filters]: each image's highest pre-activation of every filter over the units its
        objective sees, or every class's lead (see peak; one pass over `images` in [0, 1])."""
        pre = self.cut.forward(self.preprocess(tf.constant(images)))
        if self.cut.classes:  # a class fires when the model puts the image in it
            pre = measures.class_leads(pre)
        pre = self._startable(pre)
        return tf.reduce_max(tf.reshape(pre, [pre.shape[0], -1, pre.shape[-1]]), axis=1).numpy()


class ObjectiveBatch:
    """A batch of `objectives.Objective`s, one per image; item i is the i-th objective. `cuts` maps
    every layer they read to its `graph.Cut`.

    Each layer term is divided by its scale: the standard deviation over noise images of the values
    it reads (its channel's pre-activation; for a direction, the projection), so weights mean the same
    for every filter and layer. A channel or neuron term with a positive weight and an element-wise
    activation starts as a silent filter does (see measures.started) until it fires. The regularizer
    terms are the objective's own, applied once the layer part is above START_THRESHOLD.
    """

    def __init__(self, objectives, cuts: dict, preprocess, image_shape, seed: int):

        self.objectives, self.cuts, self.preprocess = tuple(objectives), dict(cuts), preprocess
        self.diversity = 0.0  # no group terms (see check_groups)
        self.batched = False  # each image in a pass of its own (models.per_image)
        self.elementwise = {layer: not cut.classes and is_elementwise(cut.activation, (None, *cut.output_shape))
                            for layer, cut in self.cuts.items()}
        for objective in self.objectives:
            check_objective(objective, self.cuts)
        check_groups(self.objectives, None)
        self.lp_p = _one_p(self.objectives)
        noise = tf.constant(scale_noise(seed, image_shape))
        # cuts computing in a lower type (--precision) are measured in float32 (graph.Cut.exact)
        exact = {layer: cut.exact or cut for layer, cut in self.cuts.items()}
        pre = {layer: cut.forward(preprocess(noise)) for layer, cut in exact.items()}
        self.term_scales = [{term: _term_scale(term, pre[term.layer]) for _, term in o.layer_parts}
                            for o in self.objectives]
        values = {layer: self.cuts[layer].activation(p) for layer, p in pre.items()}
        self.noise_activation = np.array([float(tf.reduce_mean(_layer_value(o, values, noise)))
                                          for o in self.objectives], np.float32)
        scales = np.array([max(sum(abs(w) * s[t] for w, t in o.layer_parts), 1e-12)
                           for o, s in zip(self.objectives, self.term_scales)], np.float32)
        self.scales = tf.constant(scales)
        self.inverse_scales = tf.constant(1.0 / scales)
        weights = [_regularizer_weights(o) for o in self.objectives]
        self.tv_weights = tf.constant([w[0] for w in weights], tf.float32)
        self.lp_weights = tf.constant([w[1] for w in weights], tf.float32)
        self.colour = tf.constant([_colour_weight(o) for o in self.objectives], tf.float32)
        self.exact = None
        if any(cut.exact is not None for cut in self.cuts.values()):
            self.exact = copy.copy(self)
            self.exact.cuts = exact

    @property
    def count(self) -> int:
        return len(self.objectives)

    @property
    def classes(self) -> bool:
        """False: an objective's picture is judged by its value, never by a class."""
        return False

    def activation_and_peak(self, inputs, items, slot: int):
        """(activation, peak) [1] of the image in place `slot`: its objective's layer part, twice."""
        value, _ = self.objective(inputs, items, slot)
        return value, value

    def regularizers(self) -> tuple:
        """(tv weights, lp weights, p) of the objectives' own regularizer terms."""
        return self.tv_weights, self.lp_weights, self.lp_p

    def colour_weights(self):
        """[count]: the colour-range term's weight (negated) of each objective."""
        return self.colour

    def _pre(self, inputs):
        return {layer: cut.forward(inputs) for layer, cut in self.cuts.items()}

    def objective(self, inputs, items, slot: int):
        """Model input [1, H, W, C] of the image in place `slot` of the batch -> (activation, start), [1]:
        its objective's layer part as it is, and in units of its scale with silent terms started (the
        optimized quantity times the scale, so that the Renderer's division leaves it)."""
        objective, scales = self.objectives[slot], self.term_scales[slot]
        pre = self._pre(inputs)
        value, started = tf.zeros([1]), tf.zeros([1])
        for weight, term in objective.layer_parts:
            cut = self.cuts[term.layer]
            post = term.value(cut.activation(pre[term.layer]), None)
            wakeable = weight > 0 and isinstance(term, (obj.Channel, obj.Neuron)) and self.elementwise[term.layer]
            if wakeable:
                threshold = START_THRESHOLD * scales[term]
                selected = _selected(term, pre[term.layer])
                start = measures.start_objective(selected, tf.zeros([1], tf.int32), tf.fill([1], threshold))
                post_started = measures.started(post, start, threshold)
            else:
                post_started = post
            value += weight * post
            started += weight * post_started / scales[term]
        return value, started * self.scales[slot]

    def peak(self, inputs, items, slot: int):
        """[1]: the objective's layer part (no dead verdict for objectives)."""
        value, _ = self.objective(inputs, items, slot)
        return value


def check_objective(objective, cuts):
    """SpecError for an objective that cannot be rendered on these layers."""
    if not isinstance(objective, obj.Objective):
        raise SpecError(f"objective must be built with filtervis.objectives (channel, neuron, ...), but was "
                        f"{type(objective).__name__}")
    if not objective.layer_parts:
        raise SpecError(f"objective {objective!r} reads no layer; add a layer term such as channel(layer, k)")
    for _, term in objective.layer_parts:
        shape = cuts[term.layer].output_shape
        channels = int(shape[-1])
        if isinstance(term, (obj.Channel, obj.Neuron, obj.ClassLogit)) and term.index >= channels:
            raise SpecError(f"{term!r}: index {term.index} is past the {channels} filters of layer "
                            f"'{term.layer}' (valid: 0-{channels - 1})")
        if isinstance(term, obj.Direction) and len(term.vector) != channels:
            raise SpecError(f"{term!r}: the vector has {len(term.vector)} weights but layer '{term.layer}' has "
                            f"{channels} filters; give one weight per filter")
        if isinstance(term, obj.Neuron) and (term.y is not None or term.x is not None):
            if len(shape) != 3:
                raise SpecError(f"{term!r}: layer '{term.layer}' has no places (output {tuple(shape)}); "
                                "leave y and x out")
            y = shape[0] // 2 if term.y is None else term.y
            x = shape[1] // 2 if term.x is None else term.x
            if y >= shape[0] or x >= shape[1]:
                raise SpecError(f"{term!r}: (y, x) = ({y}, {x}) is outside the layer's {shape[0]}x{shape[1]} "
                                "output (height x width)")
        if isinstance(term, obj.ClassLogit) and len(shape) != 1:
            raise SpecError(f"{term!r}: layer '{term.layer}' has output {tuple(shape)}, not (batch, classes); "
                            "use channel() for maps")


def check_groups(goals, cuts: dict | None, pictures: int = 1):
    """SpecError unless the goals' diversity terms can be rendered: they compare the `pictures`
    pictures of one objective (2 or more), and are compiled with objectives of the per-filter form on
    the same layer (see per_filter; `cuts` None: the goals are not of it)."""
    with_terms = [goal for goal in goals if goal.group_parts]
    if not with_terms:
        return
    goal = with_terms[0]
    term = goal.group_parts[0][1]
    if cuts is None or per_filter(list(goals), cuts) is None:
        raise SpecError(f"{goal!r}: {term!r} is rendered with objectives of one filter term each (channel, "
                        f"neuron or class_logit) on layer '{term.layer}', every one with the same diversity "
                        "and image terms; render the others without diversity()")
    if pictures < 2:
        raise SpecError(f"{goal!r}: {term!r} compares the pictures of one objective; ask for several with "
                        "diversity=N (2 or more), or leave diversity() out")


def _colour_weight(objective) -> float:
    """Minus the objective's weight of its colour-range term (0: none)."""
    return float(-sum(w for w, t in objective.image_parts if isinstance(t, obj.ColourRange)))


def _one_p(objectives) -> float:
    ps = {t.p for o in objectives for _, t in o.image_parts if isinstance(t, obj.LpNorm)}
    if len(ps) > 1:
        raise SpecError(f"the objectives of one render use Lp norms of different p ({', '.join(map(str, sorted(ps)))}); "
                        "use one p, or render them separately")
    return ps.pop() if ps else 6.0


def _regularizer_weights(objective) -> tuple[float, float]:
    """(tv weight, lp weight) of the loss: minus the objective's weights of those terms."""
    tv = -sum(w for w, t in objective.image_parts if isinstance(t, obj.TotalVariation))
    lp = -sum(w for w, t in objective.image_parts if isinstance(t, obj.LpNorm))
    return float(tv), float(lp)


def _selected(term, pre):
    """The pre-activation values a term reads, [B, ..., 1] (for its start and its scale)."""
    if isinstance(term, obj.Direction):
        weights = tf.constant(term.vector, tf.float32)
        return tf.tensordot(pre, weights, axes=[[len(pre.shape) - 1], [0]])[..., None]
    values = pre[..., term.index:term.index + 1]
    if isinstance(term, obj.Neuron) and len(values.shape) == 4:
        y = values.shape[1] // 2 if term.y is None else term.y
        x = values.shape[2] // 2 if term.x is None else term.x
        values = values[:, y:y + 1, x:x + 1, :]
    return values


def _term_scale(term, pre) -> float:
    """The spread over noise images of the values `term` reads (see ObjectiveBatch)."""
    values = _selected(term, pre) if not isinstance(term, obj.Neuron) else pre[..., term.index:term.index + 1]
    std, _ = _spread(values)
    return float(std[0])


def _layer_value(objective, values: dict, images):
    total = tf.zeros([tf.shape(images)[0]])
    for weight, term in objective.layer_parts:
        total += weight * term.value(values[term.layer], images)
    return total
