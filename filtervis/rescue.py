"""Automatic rescue of filters that did not converge, with the recipe of the keras-vis docs.

A filter whose image does not drive it clearly above noise (`FilterResult.converged`) is rerun from
scratch as plain pixels with every regularizer off (total variation and the Lp norm fight the
activation at the start, and a 1/f spectrum starves filters that want fine detail), then once more
from that image with total variation back on, which smooths the noise it leaves. The best of the
three images is kept: the last converged one, else the one furthest above its noise.
"""

from __future__ import annotations

import dataclasses

from . import optimize
from .params import Pixels

RESCUE_TV_WEIGHT = 1.0  # TV of the second pass when the run itself has none (the old default)


def _ratio(result) -> float:
    """How far above noise an image drives its filter (for choosing among unconverged images)."""
    return result.activation / max(result.noise_activation, 1e-3 * result.scale)


class Rescuer:
    """Reruns unconverged filters of one layer; renderers are built on first need, one per batch size."""

    def __init__(self, cut, preprocess, image_shape, settings: optimize.Settings, max_batch: int):
        self.cut, self.preprocess, self.image_shape, self.max_batch = cut, preprocess, image_shape, max_batch
        self.stages = (
            dataclasses.replace(settings, tv_weight=0.0, lp_weight=0.0, transforms="none"),
            dataclasses.replace(settings, tv_weight=settings.tv_weight or RESCUE_TV_WEIGHT, lp_weight=0.0,
                                transforms="none"),
        )
        self._renderers: dict[tuple[int, int], optimize.Renderer] = {}

    def steps(self, count: int) -> int:
        """Filter-steps a rescue of `count` filters takes (for a progress bar)."""
        return count * sum(stage.steps for stage in self.stages)

    def _renderer(self, stage: int, batch: int) -> optimize.Renderer:
        key = (stage, batch)
        if key not in self._renderers:
            self._renderers[key] = optimize.Renderer(self.cut, self.preprocess, self.image_shape, batch,
                                                     self.stages[stage], Pixels(self.image_shape))
        return self._renderers[key]

    def rescue(self, results: list, progress=None) -> tuple[list, set[int]]:
        """`results` with every unconverged filter rerun; returns (results, indices of the rescued filters).

        A rescued result counts the steps and seconds of every pass and carries the frames of all of them.
        """
        failed = [r for r in results if not r.converged]
        if not failed:
            return results, set()
        better = {}
        for start in range(0, len(failed), self.max_batch):
            group = failed[start:start + self.max_batch]
            batch = min(self.max_batch, 1 << (len(group) - 1).bit_length())  # few sizes, few traces
            indices = [r.index for r in group]
            first = self._renderer(0, batch).render(indices, progress=progress)
            second = self._renderer(1, batch).render(indices, [r.image / 255.0 for r in first], progress=progress)
            for original, *passes in zip(group, first, second):
                better[original.index] = _combine(original, passes)
        return [better.get(r.index, r) for r in results], set(better)


def _combine(original, passes):
    """The kept image of a rescued filter, with the steps, seconds and frames of every pass."""
    converged = [r for r in passes if r.converged]
    chosen = converged[-1] if converged else max([original, *passes], key=_ratio)
    runs = [original, *passes]
    return dataclasses.replace(chosen, steps=sum(r.steps for r in runs), seconds=sum(r.seconds for r in runs),
                               frames=tuple(frame for r in runs for frame in r.frames))
