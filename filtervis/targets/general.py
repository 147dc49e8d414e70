"""The general path: any `objectives.Objective` per image, over one or more layers (each cut on its
own), compiled batch by batch. Items are the objectives' places in the batch.
"""

from __future__ import annotations

import copy

import numpy as np
import tensorflow as tf

from .. import measures
from .. import objectives as obj
from ..models import is_elementwise
from .goals import check_groups, check_objective, colour_weight, one_p, regularizer_weights
from .noise import START_THRESHOLD, scale_noise, spread


class ObjectiveBatch:
    """A batch of `objectives.Objective`s, one per image; item i is the i-th objective. `cuts` maps
    every layer they read to its `models.Cut`.

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
        self.lp_p = one_p(self.objectives)
        noise = tf.constant(scale_noise(seed, image_shape))
        # cuts computing in a lower type (--precision) are measured in float32 (models.Cut.exact)
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
        weights = [regularizer_weights(o) for o in self.objectives]
        self.tv_weights = tf.constant([w[0] for w in weights], tf.float32)
        self.lp_weights = tf.constant([w[1] for w in weights], tf.float32)
        self.colour = tf.constant([colour_weight(o) for o in self.objectives], tf.float32)
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
    std, _ = spread(values)
    return float(std[0])


def _layer_value(objective, values: dict, images):
    total = tf.zeros([tf.shape(images)[0]])
    for weight, term in objective.layer_parts:
        total += weight * term.value(values[term.layer], images)
    return total
