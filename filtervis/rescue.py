"""Automatic rescue of filters that did not converge, with the recipe of the keras-vis docs, then from
natural-looking starts; filters that nothing fires are reported dead.

A filter whose image does not drive it clearly above noise (`FilterResult.strong`) is rerun from
scratch as plain pixels with every regularizer off (total variation and the Lp norm fight the
activation at the start, and a 1/f spectrum starves filters that want fine detail), then once more
from that image with total variation back on, which smooths the noise it leaves.

A filter still silent after that gets the same two passes again from the image of `starts.bank`
(flat fields, edges, gratings, blobs, 1/f noise, ...) that drives its pre-activation highest: the
ReLUs in front of it pass no gradient towards what it wants from a near-grey start (VGG16 hed
block2_conv1 filter 0 fires on flat bright fields and on nothing textured). A start that already
fires the filter is refined by the first pass alone, with a smaller step (START_LR_FACTOR), so
that the first steps' texture does not silence it again (nor TV trade its activation for smoothness:
the starts are smooth already).

Before any of that, a filter that nothing has fired yet (neither its image nor any start of the bank,
uniform noise among them, drove its pre-activation above 0) gets a probe instead: PROBE_SHARE of
--steps (at least PROBE_MIN_STEPS) of the first pass's settings from its usual start, climbing its
pre-activation at every unit and at its centre unit (targets.LayerFilters.probe_objective). A filter the
probe does not fire is `dead` at once: deciding it costs 1 + PROBE_SHARE times --steps from --steps 128
on (the passes above cost 5 times). One the probe fires is alive: its probe's image is refined as a start
that fires it, and when that does not converge it, it goes through the passes as well.

The kept image is the last converged one, else the one furthest above its noise (then the one
closest to firing), the probe's among them. A filter that no image or start drove above 0 (`peak`, its
highest pre-activation, at most 0) is `dead`.

Classes are judged by whether the model puts their picture in them (optimize.FilterResult.lead): a
class is rerun when it does not, its `peak` is its lead over the runner-up (above 0: it won), and a
class that no image or start made win is `dead` too (the record calls it unwinnable). Classes get no
probe: their margin has no unit to climb and no ReLU that silences it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from . import models, optimize, starts
from .params import Pixels

PROBE_SHARE = 0.5  # a filter nothing fired yet gets this share of --steps to fire before it is called dead...
PROBE_MIN_STEPS = 64  # ...and never fewer: VGG16 hed block2_conv2 filters 96 and 116 (alive) fired after 48-56
# steps of the probe; 16 steps (half of --steps 32) fired none of 6 such filters
RESCUE_TV_WEIGHT = 1.0  # TV of the second pass when the run itself has none (the old default)
START_LR_FACTOR = 0.2  # a start that fires its filter is refined at this times --lr (at --lr, VGG16 hed
# block2_conv1 filter 0 fell from 9.5 on a white field to 0.09; at 0.2x it kept 8.4)


def _ratio(result) -> float:
    """How far above noise an image drives its filter (for choosing among unconverged images)."""
    return result.activation / max(result.noise_activation, 1e-3 * result.scale)


def _rank(result) -> tuple[float, float]:
    """Unconverged images, best last: furthest above noise, then closest to firing; a class's, closest
    to winning (its lead), then by margin."""
    peak = result.peak if math.isfinite(result.peak) else -math.inf
    if result.lead is not None:
        return peak, result.activation
    return _ratio(result), peak


class Rescuer:
    """Reruns unconverged filters of one layer; renderers are built on first need, one per batch size."""

    def __init__(self, target, preprocess, image_shape, settings: optimize.Settings, max_batch: int):
        """`target`: the layer's targets.LayerFilters (its scales are measured once, for every pass);
        `settings` the optimizer's (its `diversity` 1: the rescue reruns one picture per filter);
        `max_batch` the most filters rerun together."""
        self.target, self.preprocess, self.image_shape, self.max_batch = target, preprocess, image_shape, max_batch
        plain = dataclasses.replace(settings, transforms="none")  # every pass and the probe: no transforms
        self.stages = (  # (settings, target) of each pass: no regularizers, then TV from the first pass's image
            (plain, target.with_regularizers(0.0, 0.0)),
            (plain, target.with_regularizers(target.tv_weight or RESCUE_TV_WEIGHT, 0.0)),
        )
        # (settings, target) of the probe of filters nothing fired yet; none for classes
        self.probe = None if target.classes else (
            dataclasses.replace(plain, steps=probe_steps(settings.steps)), target.probe())
        self.renderers: dict[tuple, optimize.Renderer] = {}  # built on first need: (pass, batch[, lr factor])
        self._bank = None  # (start images [N, H, W, C], their peaks [N, filters]) once needed

    def steps(self, count: int) -> int:
        """Filter-steps a rescue of `count` filters takes at most (for a progress bar): the probe and the
        refinement of its image, then both passes twice. The passes a filter does not need are reported
        to `progress` as done."""
        return count * (self._probe_steps() + self._refine_steps() + 2 * self._recipe_steps())

    def _recipe_steps(self) -> int:
        return sum(settings.steps for settings, _ in self.stages)

    def _probe_steps(self) -> int:
        return self.probe[0].steps if self.probe else 0

    def _refine_steps(self) -> int:
        """The steps of refining a probe's image that fired its filter (the first pass alone)."""
        return self.stages[0][0].steps if self.probe else 0

    def _batches(self, indices: list[int]):
        """(group, batch size) of `indices` in groups of at most max_batch; batch sizes are powers of 2
        (few sizes, few traces)."""
        for start in range(0, len(indices), self.max_batch):
            group = indices[start:start + self.max_batch]
            yield group, min(self.max_batch, 1 << (len(group) - 1).bit_length())

    def _renderer(self, stage: int, batch: int, lr_factor: float = 1.0) -> optimize.Renderer:
        key = (stage, batch) if lr_factor == 1.0 else (stage, batch, lr_factor)
        if key not in self.renderers:
            settings, target = self.stages[stage]
            settings = dataclasses.replace(settings, lr=settings.lr * lr_factor) if lr_factor != 1.0 else settings
            self.renderers[key] = optimize.Renderer(target, self.preprocess, self.image_shape, batch, settings,
                                                     Pixels(self.image_shape))
        return self.renderers[key]

    def _passes(self, indices: list[int], images: dict | None, lr_factor: float, progress,
                both: bool = True) -> dict[int, list]:
        """{filter: [first pass, second pass]}: both passes (the first alone unless `both`) over
        `indices`, from `images` ({filter: [H, W, C] in [0, 1]}) or the usual start, in batches
        of at most max_batch."""
        out = {}
        for group, batch in self._batches(indices):
            seeds = [images[i] for i in group] if images is not None else None
            first = self._renderer(0, batch, lr_factor).render(group, seeds, progress=progress)
            if not both:
                out.update({a.index: [a] for a in first})
                continue
            second = self._renderer(1, batch, lr_factor).render(group, [r.image / 255.0 for r in first],
                                                                progress=progress)
            out.update({a.index: [a, b] for a, b in zip(first, second)})
        return out

    def start_peaks(self) -> tuple[np.ndarray, np.ndarray]:
        """(bank [N, H, W, C] of starts.bank, peaks [N, filters]: each start's highest
        pre-activation of each filter over the units its objective sees, or each class's lead), from
        one forward pass of the bank in batches of max_batch, computed once."""
        if self._bank is None:
            bank = starts.bank(*self.image_shape, self.stages[0][0].seed)
            peaks = [self.target.start_peaks(bank[start:start + self.max_batch])
                     for start in range(0, len(bank), self.max_batch)]
            self._bank = bank, np.concatenate(peaks)
        return self._bank

    def rescue(self, results: list, progress=None) -> tuple[list, set[int]]:
        """`results` with every unconverged filter rerun; returns (results, indices of the rescued filters).

        A rescued result counts the steps and seconds of every pass (its probe's too) and carries the
        frames of all of them; its `peak` is the highest over its images and its best start, and `dead`
        tells that it is 0 or less.
        """
        failed = [r for r in results if not r.strong]
        if not failed:
            return results, set()
        unfired = self._unfired(failed)
        if progress and len(unfired) < len(failed):
            progress((len(failed) - len(unfired)) * (self._probe_steps() + self._refine_steps()))  # they skip
        runs = {r.index: [r] for r in failed}
        woken = self._probed(unfired, runs, progress) if unfired else []
        dead = {i: _combine(runs.pop(i), self._best_start(i)) for i in unfired if i not in woken}
        if progress and dead:
            progress(len(dead) * (self._refine_steps() + 2 * self._recipe_steps()))  # what they skip
        done = [i for i in woken if any(r.strong for r in runs[i][1:])]  # the probe (refined) converged them
        if progress and done:
            progress(len(done) * 2 * self._recipe_steps())  # the passes they skip
        rest = [i for i in runs if i not in done]
        for index, passes in self._passes(rest, None, 1.0, progress).items():
            runs[index] += passes
        silent = [i for i in rest if not any(r.strong for r in runs[i])]
        if progress and len(silent) < len(rest):
            progress((len(rest) - len(silent)) * self._recipe_steps())  # the start passes they skip
        start_peak = self._rerun_from_starts(silent, runs, progress) if silent else {}
        better = {i: _combine(tried, start_peak.get(i, -math.inf)) for i, tried in runs.items()}
        better.update(dead)
        return [better.get(r.index, r) for r in results], set(better)

    def _probed(self, unfired: list[int], runs: dict, progress) -> list[int]:
        """Probe `unfired` (filters nothing fired yet) and refine the image of each probe that fired its
        filter as a start that fires it (the first pass alone, at START_LR_FACTOR times --lr), appending
        the probe and that pass to `runs`; returns the filters their probe fired."""
        probes = self._probe(unfired, progress)
        for i in unfired:
            runs[i].append(probes[i])
        woken = [i for i in unfired if probes[i].peak > 0]
        if woken:
            images = {i: probes[i].image / 255.0 for i in woken}
            for index, passes in self._passes(woken, images, START_LR_FACTOR, progress, both=False).items():
                runs[index] += passes
        return woken

    def _best_start(self, index: int) -> float:
        """The highest peak any start of the bank gives filter `index`."""
        _, peaks = self.start_peaks()
        return float(np.nan_to_num(peaks[:, index], nan=-np.inf).max())

    def _unfired(self, failed: list) -> list[int]:
        """The filters of `failed` that nothing fired yet: neither their image nor any start of the bank
        drove their pre-activation above 0 (none when they are classes: they get no probe)."""
        if self.probe is None:
            return []
        return [r.index for r in failed if r.peak <= 0 and self._best_start(r.index) <= 0]

    def _probe(self, indices: list[int], progress) -> dict:
        """{filter: its probe's FilterResult} for `indices` (see the module doc), measured as the filter's
        own image is: its `activation` and `loss` are the filter's (the first pass's, which has no
        regularizers), its `peak` the highest pre-activation over all the units the filter's objective sees."""
        settings, target = self.probe
        probes = {}
        for group, batch in self._batches(indices):
            key = ("probe", batch)
            if key not in self.renderers:
                self.renderers[key] = optimize.Renderer(target, self.preprocess, self.image_shape, batch, settings,
                                                        Pixels(self.image_shape))
            done = self.renderers[key].render(group, progress=progress)
            pixels = np.stack([r.image for r in done]).astype(np.float32) / 255.0
            (activation,) = models.per_image(lambda x, item, i: self.target.objective(x, item, i)[:1],
                                             self.preprocess(tf.constant(pixels)), tf.constant(group))
            climbed = self.target.start_peaks(pixels)
            probes.update({r.index: dataclasses.replace(r, activation=float(a), loss=-float(a) / r.scale,
                                                        peak=float(climbed[k, r.index]))
                           for k, (r, a) in enumerate(zip(done, activation.numpy()))})
        return probes

    def _rerun_from_starts(self, silent: list[int], runs: dict, progress) -> dict[int, float]:
        """Rerun each of `silent` from its best start (see the module doc), appending the passes to
        `runs`; returns {filter: the peak of its best start}."""
        bank, peaks = self.start_peaks()
        best = {i: int(np.argmax(np.nan_to_num(peaks[:, i], nan=-np.inf))) for i in silent}
        start_peak = {i: float(peaks[best[i], i]) for i in silent}
        fired = [i for i in silent if start_peak[i] > 0]
        if progress and fired:
            progress(len(fired) * self.stages[1][0].steps)  # the second pass they skip
        unfired = [i for i in silent if i not in fired]
        for group, factor, both in ((fired, START_LR_FACTOR, False), (unfired, 1.0, True)):
            if group:
                images = {i: bank[best[i]] for i in group}
                for index, passes in self._passes(group, images, factor, progress, both).items():
                    runs[index] += passes
        return start_peak


def probe_steps(steps: int) -> int:
    """The probe's steps for a run of `steps`: PROBE_SHARE of them, at least PROBE_MIN_STEPS."""
    return max(PROBE_MIN_STEPS, int(PROBE_SHARE * steps))


def _combine(runs, start_peak: float):
    """The kept image of a rescued filter (`runs`: its first result, then every pass), with the steps,
    seconds and frames of every pass, its peak over all of them and `start_peak`, and whether it is dead."""
    converged = [r for r in runs[1:] if r.strong]
    chosen = converged[-1] if converged else max(runs, key=_rank)
    peak = max([p for p in (start_peak, *(r.peak for r in runs)) if not math.isnan(p)], default=math.nan)
    dead = not chosen.converged and chosen.finite and peak <= 0
    return dataclasses.replace(chosen, steps=sum(r.steps for r in runs), seconds=sum(r.seconds for r in runs),
                               frames=tuple(frame for r in runs for frame in r.frames), peak=peak, dead=dead)
