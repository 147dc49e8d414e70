"""A run's goals as objectives, and the form the fast path renders: what `filtervis run` renders for a
layer (`unit_goals`), the colour range `render` adds (`ranged`), whether goals are one filter each of one
layer (`per_filter`), and what cannot be rendered (`check_objective`, `check_groups`).
"""

from __future__ import annotations

import dataclasses

from .. import objectives as obj
from ..errors import SpecError

RANGE_WEIGHT = 20.0  # the penalty on colour out of range (measures.range_excess), in units of the filter's scale:
# VGG16 hed block3_conv1 at 224 px, 8 filters: clipped colour from 4.4% to 0.0% (median), activation 0.8% lower
DIVERSITY_SHARE = 6.0  # --diversity: the penalty is this times the objective's size times the mean Gram
# cosine to the filter's other pictures (held fixed: each picture moves itself away from them), gated by
# loss.DIVERSITY_GATE


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
    tv, lp = regularizer_weights(goals[0])
    ps = [t.p for _, t in goals[0].image_parts if isinstance(t, obj.LpNorm)]
    return PerFilter(layer, "neuron" if kind is obj.Neuron else "channel", tuple(t.index for t in terms), tv, lp,
                     ps[0] if ps else None, colour_weight(goals[0]), float(-sum(w for w, _ in shared)))


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


def colour_weight(objective) -> float:
    """Minus the objective's weight of its colour-range term (0: none)."""
    return float(-sum(w for w, t in objective.image_parts if isinstance(t, obj.ColourRange)))


def one_p(objectives) -> float:
    ps = {t.p for o in objectives for _, t in o.image_parts if isinstance(t, obj.LpNorm)}
    if len(ps) > 1:
        raise SpecError(f"the objectives of one render use Lp norms of different p ({', '.join(map(str, sorted(ps)))}); "
                        "use one p, or render them separately")
    return ps.pop() if ps else 6.0


def regularizer_weights(objective) -> tuple[float, float]:
    """(tv weight, lp weight) of the loss: minus the objective's weights of those terms."""
    tv = -sum(w for w, t in objective.image_parts if isinstance(t, obj.TotalVariation))
    lp = -sum(w for w, t in objective.image_parts if isinstance(t, obj.LpNorm))
    return float(tv), float(lp)
