"""Objectives as values: what an image should maximize, built from terms and combined with + - and
numbers.

    from filtervis import objectives as obj

    obj.channel("block4_conv3", 3) - 0.5 * obj.channel("block4_conv3", 7)   # filter 3 but not filter 7
    obj.neuron("block5_conv3", 12) + obj.class_logit("predictions", 281)    # two layers at once
    obj.channel("conv2", 0) - 0.1 * obj.total_variation()                   # with a regularizer
    obj.channel("block4_conv3", 3) - 6 * obj.diversity("block4_conv3")     # pictures unlike each other

An `Objective` is immutable: every operation returns a new one and leaves its operands as they were.
Its value on a batch is the weighted sum of its terms' values (`Objective.value`); `filtervis.render`
maximizes it, each layer term counted in units of its filter's typical response to noise (so that
weights mean the same for every filter and layer, as `--tv-weight` does).

Layer terms see the layer's output as the layer gives it, except that a softmax or sigmoid is left
out (a class term sees logits). Regularizer terms see the image (values in [0, 1]): subtract them.

Two terms are about how pictures are made rather than what they show; subtract them too:

- `diversity(layer)`: how alike a picture's feature statistics at `layer` are to those of the other
  pictures of its objective (`render(..., diversity=N)` makes N of them, side by side). Its weight
  is in units of the objective's own size: `- 6 * diversity(layer)` is what `--diversity N` adds.
- `colour_range()`: how far the picture's colours lie beyond what the image can show, for the
  parameterizations that map through a sigmoid (fft, maco; pixels are clipped instead, and the term
  is left out there). `render` adds `- 20 * colour_range()` to an objective without one, as
  `filtervis run` does.

In a render, the colour range applies like TV and the Lp norm, once the objective's layer part fires
(see targets.fires); diversity is gated by how strong each picture is (see targets.loss).
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import tensorflow as tf

from . import measures
from .errors import SpecError


@dataclasses.dataclass(frozen=True)
class Term:
    """One named quantity of a batch, [B]; subclasses say how it is computed."""

    compares = False  # True: the term compares the pictures of a group with each other (Diversity)

    @property
    def layer(self) -> str | None:
        """The layer the term reads (None: the term reads the image)."""
        return None

    def value(self, outputs, images):
        """[B]: the term on `outputs` (the layer's values, [B, ..., C]) or `images` [B, H, W, C]."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Channel(Term):
    """The spatial mean of filter `index` (a unit of a (batch, units) layer)."""

    layer_name: str
    index: int

    @property
    def layer(self):
        return self.layer_name

    def value(self, outputs, images):
        return measures.channel(outputs, _indices(outputs, self.index))

    def __repr__(self):
        return f"channel({self.layer_name!r}, {self.index})"


@dataclasses.dataclass(frozen=True)
class Neuron(Term):
    """Filter `index` at one place: (y, x) of the layer's output, its centre when None."""

    layer_name: str
    index: int
    y: int | None = None
    x: int | None = None

    @property
    def layer(self):
        return self.layer_name

    def value(self, outputs, images):
        if len(outputs.shape) == 4:
            y = outputs.shape[1] // 2 if self.y is None else self.y
            x = outputs.shape[2] // 2 if self.x is None else self.x
            outputs = outputs[:, y:y + 1, x:x + 1, :]
        return measures.channel(outputs, _indices(outputs, self.index))

    def __repr__(self):
        where = "" if self.y is None and self.x is None else f", y={self.y}, x={self.x}"
        return f"neuron({self.layer_name!r}, {self.index}{where})"


@dataclasses.dataclass(frozen=True)
class Direction(Term):
    """The spatial mean of the layer's values projected on `vector` (one weight per channel)."""

    layer_name: str
    vector: tuple[float, ...]

    @property
    def layer(self):
        return self.layer_name

    def value(self, outputs, images):
        weights = tf.constant(self.vector, tf.float32)
        projected = tf.tensordot(outputs, weights, axes=[[len(outputs.shape) - 1], [0]])
        axes = list(range(1, len(projected.shape)))
        return tf.reduce_mean(projected, axis=axes) if axes else projected

    def __repr__(self):
        return f"direction({self.layer_name!r}, <{len(self.vector)} weights>)"


@dataclasses.dataclass(frozen=True)
class ClassLogit(Term):
    """Class `index` of a (batch, classes) layer: by default its margin (its logit minus the
    log-sum-exp of the others' logits: the log-odds of its softmax probability, what `filtervis run`
    maximizes on a class layer), else (`margin=False`) the logit itself."""

    layer_name: str
    index: int
    margin: bool = True

    @property
    def layer(self):
        return self.layer_name

    def value(self, outputs, images):
        classes = _indices(outputs, self.index)
        if self.margin:
            return measures.class_margin(outputs, classes)
        return tf.gather(outputs, classes, axis=1, batch_dims=1)

    def __repr__(self):
        return f"class_logit({self.layer_name!r}, {self.index}{'' if self.margin else ', margin=False'})"


@dataclasses.dataclass(frozen=True)
class TotalVariation(Term):
    """The image's total variation (mean absolute difference of neighbouring pixels, in [0, 2])."""

    def value(self, outputs, images):
        return measures.total_variation(images)

    def __repr__(self):
        return "total_variation()"


@dataclasses.dataclass(frozen=True)
class LpNorm(Term):
    """The image's Lp norm around mid-grey, in [0, 1] (see measures.lp_norm)."""

    p: float = 6.0

    def value(self, outputs, images):
        return measures.lp_norm(images, self.p)

    def __repr__(self):
        return f"lp_norm({self.p:g})"


@dataclasses.dataclass(frozen=True)
class Diversity(Term):
    """How alike each picture's feature statistics at the layer are to those of the other pictures of
    its group, in [0, 1] for non-negative features (lucid's diversity objective): the mean cosine
    between its flattened Gram matrix (channel by channel products summed over places) and each
    other picture's. Subtract it to push the pictures apart.

    Its value on a batch takes the batch as one group (0 for a batch of one). A render takes each
    objective's pictures as a group (`diversity=N`; `filtervis run --diversity N`); there the term is
    compiled with the objective's filter term (see targets.per_filter), compares the feature maps of
    the pass that computes the filter (the layer's input when only each picture's own filter is
    computed, else the layer's output), holds the other pictures fixed, weighs in units of the
    objective's size and is gated so that no picture gives up its filter to be different (see
    targets.loss)."""

    layer_name: str
    compares = True

    @property
    def layer(self):
        return self.layer_name

    def value(self, outputs, images):
        count = outputs.shape[0]
        if count is None or count < 2:
            return tf.zeros([tf.shape(outputs)[0]])
        return measures.gram_similarity(outputs, count)

    def __repr__(self):
        return f"diversity({self.layer_name!r})"


@dataclasses.dataclass(frozen=True)
class ColourRange(Term):
    """The image's colour out of range: how far its values' logits lie beyond +-measures.RANGE_LOGIT
    (see measures.range_excess; 0 for colours well inside [0, 1])."""

    def value(self, outputs, images):
        return measures.range_excess(images)

    def __repr__(self):
        return "colour_range()"


def _indices(outputs, index: int):
    return tf.fill([tf.shape(outputs)[0]], tf.constant(index, tf.int32))


@dataclasses.dataclass(frozen=True)
class Objective:
    """A weighted sum of terms, `((weight, term), ...)`; each term appears once."""

    parts: tuple[tuple[float, Term], ...]

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers the objective reads, in order of first appearance."""
        return tuple(dict.fromkeys(t.layer for _, t in self.parts if t.layer is not None))

    @property
    def layer_parts(self) -> tuple[tuple[float, Term], ...]:
        """The terms that read a layer for each picture on its own (all but group_parts)."""
        return tuple((w, t) for w, t in self.parts if t.layer is not None and not t.compares)

    @property
    def group_parts(self) -> tuple[tuple[float, Term], ...]:
        """The terms that compare the pictures of a group (diversity)."""
        return tuple((w, t) for w, t in self.parts if t.compares)

    @property
    def image_parts(self) -> tuple[tuple[float, Term], ...]:
        """The regularizer terms (they read the image)."""
        return tuple((w, t) for w, t in self.parts if t.layer is None)

    def value(self, outputs: dict, images):
        """[B]: the weighted sum of the terms; `outputs` maps each of `layers` to its values [B, ..., C]."""
        total = tf.zeros([tf.shape(images)[0]])
        for weight, term in self.parts:
            total += weight * term.value(outputs.get(term.layer) if term.layer else None, images)
        return total

    def __add__(self, other):
        other = _as_objective(other)
        if other is NotImplemented:
            return NotImplemented
        weights: dict[Term, float] = {}
        for weight, term in self.parts + other.parts:
            weights[term] = weights.get(term, 0.0) + weight
        return Objective(tuple((w, t) for t, w in weights.items() if w != 0.0))

    def __radd__(self, other):
        if isinstance(other, numbers.Number) and other == 0:  # sum([...]) starts at 0
            return self
        return NotImplemented

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        other = _as_objective(other)
        if other is NotImplemented:
            return NotImplemented
        return self + (-other)

    def __mul__(self, factor):
        if not isinstance(factor, numbers.Real) or isinstance(factor, bool) or not np.isfinite(factor):
            return NotImplemented
        if factor == 0:
            return Objective(())
        return Objective(tuple((float(w) * float(factor), t) for w, t in self.parts))

    __rmul__ = __mul__

    def __truediv__(self, divisor):
        if not isinstance(divisor, numbers.Real) or isinstance(divisor, bool) or divisor == 0:
            return NotImplemented
        return self * (1.0 / float(divisor))

    def __repr__(self):
        if not self.parts:
            return "Objective(())"
        text = ""
        for weight, term in self.parts:
            sign = "-" if weight < 0 else "+"
            size = abs(weight)
            part = repr(term) if size == 1 else f"{size:g} * {term!r}"
            text += (f"-{part}" if sign == "-" else part) if not text else f" {sign} {part}"
        return text


def _as_objective(value):
    if isinstance(value, Objective):
        return value
    if isinstance(value, Term):
        return Objective(((1.0, value),))
    return NotImplemented


def _layer_name(layer) -> str:
    if not isinstance(layer, str) or not layer:
        raise SpecError(f"an objective's layer must be a layer name (a string), but was {layer!r}")
    return layer


def _index(index, what: str = "filter") -> int:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index < 0:
        raise SpecError(f"an objective's {what} index must be a whole number 0 or more, but was {index!r}")
    return int(index)


def channel(layer: str, index: int) -> Objective:
    """The mean activation of filter `index` of `layer` over the image."""
    return Objective(((1.0, Channel(_layer_name(layer), _index(index))),))


def neuron(layer: str, index: int, y: int | None = None, x: int | None = None) -> Objective:
    """Filter `index` of `layer` at one place of its output: (y, x), or the centre when not given."""
    for name, value in (("y", y), ("x", x)):
        if value is not None:
            _index(value, name)
    return Objective(((1.0, Neuron(_layer_name(layer), _index(index), y, x)),))


def direction(layer: str, vector) -> Objective:
    """The layer's values projected on `vector` (one weight per channel), averaged over the image."""
    values = np.asarray(vector, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.isfinite(values).all():
        raise SpecError(f"direction({layer!r}, ...): the vector must hold finite numbers, one per channel")
    return Objective(((1.0, Direction(_layer_name(layer), tuple(float(v) for v in values))),))


def class_logit(layer: str, index: int, margin: bool = True) -> Objective:
    """Class `index` of `layer` (a (batch, classes) output): its margin over the other classes, or with
    `margin=False` its logit (see ClassLogit)."""
    return Objective(((1.0, ClassLogit(_layer_name(layer), _index(index, "class"), bool(margin))),))


def total_variation() -> Objective:
    """The image's total variation; subtract it (`- 0.1 * total_variation()`) to smooth the picture."""
    return Objective(((1.0, TotalVariation()),))


def lp_norm(p: float = 6.0) -> Objective:
    """The image's Lp norm around mid-grey; subtract it to keep colours from saturating."""
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not p >= 1:
        raise SpecError(f"lp_norm(p): p must be 1 or more, but was {p!r}")
    return Objective(((1.0, LpNorm(float(p))),))


def diversity(layer: str) -> Objective:
    """How alike the pictures of one objective are at `layer` (see Diversity); subtract it
    (`- 6 * diversity(layer)`) and render several pictures per objective (`diversity=N`)."""
    return Objective(((1.0, Diversity(_layer_name(layer))),))


def colour_range() -> Objective:
    """The image's colour out of range (see ColourRange); subtract it (`- 20 * colour_range()`)."""
    return Objective(((1.0, ColourRange()),))


def regularized(objective: Objective, tv_weight: float = 0.0, lp_weight: float = 0.0, p: float = 6.0) -> Objective:
    """`objective` minus the CLI's regularizers: - tv_weight * TV - lp_weight * Lp."""
    if tv_weight:
        objective = objective - tv_weight * total_variation()
    if lp_weight:
        objective = objective - lp_weight * lp_norm(p)
    return objective
