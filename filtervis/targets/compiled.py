"""The one entry from goals to what the optimizer renders: `compile_goals` compiles a layer's goals
(`objectives.Objective`s: a channel, a neuron or a class margin, regularizers, diversity, colour range)
once, into the fast path (one `LayerFilters` for every batch) when they are one filter each of one layer
(`per_filter`), else into the general path (an `ObjectiveBatch` per batch).
"""

from __future__ import annotations

import dataclasses

from .general import ObjectiveBatch
from .goals import PerFilter, per_filter
from .layer import LayerFilters


@dataclasses.dataclass(frozen=True)
class Compiled:
    """A layer's goals compiled (see compile_goals); `batch(units)` gives a batch's target and items.

    Fast path: `target` is the LayerFilters of every unit (its scales measured once), `form` the goals'
    PerFilter, and a unit's item is its filter. General path (`target` None): each batch is an
    ObjectiveBatch of its units' goals, measured when the batch is made, and a unit's item is its place
    in the batch."""

    goals: dict  # {unit: objectives.Objective}, in the order units are rendered
    cuts: dict  # {layer: models.Cut} of every layer the goals read
    preprocess: object  # images in [0, 1] -> model input
    image_shape: tuple  # (height, width, channels)
    seed: int  # the run's seed: the noise images the scales are measured on
    target: LayerFilters | None = None
    form: PerFilter | None = None

    @property
    def fast(self) -> bool:
        """True on the fast path: one target for every batch."""
        return self.target is not None

    @property
    def items(self) -> dict:
        """{unit: its filter} on the fast path; empty on the general path."""
        return dict(zip(self.goals, self.form.indices)) if self.form is not None else {}

    def batch(self, units) -> tuple:
        """(target, items) of a batch of `units`: the items are the units' filters (fast path) or
        their places in the batch (general path)."""
        if self.target is not None:
            items = self.items
            return self.target, [items[unit] for unit in units]
        target = ObjectiveBatch([self.goals[unit] for unit in units], self.cuts, self.preprocess, self.image_shape,
                                self.seed)
        return target, list(range(len(units)))


def compile_goals(goals: dict, cuts: dict, preprocess, image_shape, seed: int, lp_norm: float = 6.0) -> Compiled:
    """`goals` ({unit: objectives.Objective}) compiled for `cuts` ({layer: models.Cut} of every layer they
    read), images of `image_shape` (height, width, channels) mapped to model input by `preprocess`, scales
    measured on the noise images of `seed`. Goals of the per-filter form (see per_filter: what `filtervis
    run` renders) compile into the fast path, where only each image's own filter is computed; others run
    as an ObjectiveBatch per batch. `lp_norm` is the p the pictures' Lp norm is measured with when the
    goals have no Lp term."""
    goals, image_shape = dict(goals), tuple(image_shape)
    form = per_filter(list(goals.values()), cuts)
    if form is None:
        return Compiled(goals, dict(cuts), preprocess, image_shape, seed)
    target = LayerFilters(cuts[form.layer], preprocess, image_shape, form.kind, seed, form.tv_weight, form.lp_weight,
                          lp_norm if form.lp_norm is None else form.lp_norm, form.diversity, form.colour_range)
    return Compiled(goals, dict(cuts), preprocess, image_shape, seed, target, form)
