"""The fast path: one filter (or class) of one layer per image, the layer cut once (`models.Cut`).
`filtervis run`'s goals compile to it (see compiled.py): with an element-wise activation, only each
image's own filter is computed (a sliced Conv2D, see `models.own_channel`). Items are filter indices.
"""

from __future__ import annotations

import copy

import numpy as np
import tensorflow as tf

from .. import measures
from ..models import batched_passes, is_elementwise, own_channel
from .noise import START_THRESHOLD, scale_noise, spread


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
        std, _ = spread(pre)
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
