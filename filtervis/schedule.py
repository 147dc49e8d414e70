"""The schedule: which pictures run together and what happens to a batch after its steps.

One loop (`Schedule.batches`) for every kind of render: a layer's filters (items are filter indices,
one `targets.LayerFilters` for the layer), a filter's --diversity pictures (a filter's N pictures side
by side in one batch, picture k from `targets.variant_key`), and objectives (items are places in a
list of `objectives.Objective`, a `targets.ObjectiveBatch` per batch). For each batch of units:

1. the optimizer renders it (`optimize.Renderer`; with the tile start, `tiles.TileStart`: most steps on
   a half-size tile first);
2. a unit any of whose pictures turned NaN/Inf is restarted once at RETRY_LR_FACTOR times --lr;
   With --precision bfloat16 or float16, a unit any of whose pictures is not finite or not clearly
   converged (`FilterResult.strong`) is first rendered again in float32 (`fallback`: the float32
   schedule of the same units), and steps 2 and 3 then run in float32;
3. the pictures that did not converge go to the rescue (`rescue.Rescuer`, one per --diversity picture,
   picture k's at seed + k * targets.VARIANT_SEED_STRIDE); objectives are not rescued;
4. the batch's records (`records.FilterRecord`, one per unit) are yielded.
"""

from __future__ import annotations

import dataclasses

from . import models, optimize, params, rescue, targets, tiles
from .records import group_record, record

RETRY_LR_FACTOR = 0.1  # a filter whose image or loss turned NaN/Inf is restarted once with this times --lr


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the schedule reads of a run's options: the optimizer's, and its own (their defaults and
    checks are options.py's)."""

    optimizer: optimize.Settings
    rescue: bool  # rerun the pictures that did not converge (rescue.py)
    tile: bool  # start from a half-size tile where it applies (build_tile)
    param: str  # the tile's parameterization: params.NAMES or "auto" (params.resolve)
    decay: float  # the tile's fft spectrum: amplitude falls as 1 / frequency ** decay
    lp_norm: float  # p of the pictures' Lp norm when the goals have no Lp term (targets.compile_goals)

    @classmethod
    def of(cls, options) -> "Settings":
        """The Settings of `options`: any object with these fields, and optimize.Settings', as
        attributes (an options.RunSpec)."""
        own = {field.name: getattr(options, field.name) for field in dataclasses.fields(cls)
               if field.name != "optimizer"}
        return cls(optimize.Settings.of(options), **own)


class Schedule:
    """Renders units (a layer's filters, or places in a list of objectives) batch by batch.

    `goals` maps each unit to its objectives.Objective, `cuts` every layer they read to its models.Cut;
    they are compiled once (targets.compile_goals). Objectives of the per-filter form (targets.per_filter:
    what `filtervis run` renders, one channel, neuron or class margin each) take the fast path, one
    targets.LayerFilters where each image computes only its own filter; they get the --diversity groups,
    the rescue and the tile start. Other objectives run as a targets.ObjectiveBatch per batch.
    `settings` is a Settings; `preprocess` maps images in [0, 1] to model input; `image_shape` is
    (height, width, channels); `batch` images per batch (a multiple of --diversity); `param` the
    parameterization; `starts` {unit: start image in [0, 1]} or None; `tile` a tiles.Tile or None."""

    def __init__(self, settings: Settings, preprocess, image_shape, batch: int, param, goals: dict, cuts: dict,
                 starts=None, tile=None, fallback=None):
        """`fallback`: None, or (when the model computes in a lower type than float32) a function giving
        the Schedule of the same units in float32, called once on first need."""
        self.settings, self.preprocess, self.image_shape = settings, preprocess, tuple(image_shape)
        self.batch, self.param, self.starts = batch, param, starts
        self.optimizer = settings.optimizer
        self.compiled = targets.compile_goals(goals, cuts, preprocess, self.image_shape, self.optimizer.seed,
                                              settings.lp_norm)
        fast = self.compiled.fast
        self.item = self.compiled.items  # unit -> its filter (the fast path's items)
        self.tile = tile if fast else None
        if self.tile is not None:  # the goals compiled at the tile's size
            self.tile_target = targets.compile_goals(goals, self.tile.cuts, preprocess, self.tile.shape,
                                                     self.optimizer.seed, settings.lp_norm).target
        self.group = self.optimizer.diversity if fast else 1
        self._renderers = {}  # lr -> the Renderer of the fast path's target (the general path: one per batch)
        self.fallback = fallback if fast else None
        self._precise = None  # (the float32 Schedule, its rescuers) once needed

    def renderer(self, target, settings: optimize.Settings):
        """An optimize.Renderer of `target` for the batch with `settings`, or with the tile start a
        tiles.TileStart that splits `settings.steps` between the tile and the output size."""
        if self.tile is None:
            return optimize.Renderer(target, self.preprocess, self.image_shape, self.batch, settings, self.param)
        tile = self.tile
        full = optimize.Renderer(target, self.preprocess, self.image_shape, self.batch,
                                 dataclasses.replace(settings, steps=tile.full_steps), self.param)
        small = optimize.Renderer(self.tile_target, self.preprocess, tile.shape, self.batch,
                                  dataclasses.replace(settings, steps=tile.steps, lr=settings.lr * tiles.TILE_LR_FACTOR),
                                  tile.param)
        return tiles.TileStart(small, full, tiles.pixel_share(tile.shape, self.image_shape))

    def _render(self, chunk: list[int], lr: float, progress) -> dict:
        """{(unit, picture): optimize.FilterResult} of one batch of units at step size `lr`."""
        group, seed = self.group, self.optimizer.seed
        settings = dataclasses.replace(self.optimizer, lr=lr) if lr != self.optimizer.lr else self.optimizer
        target, items = self.compiled.batch(chunk)
        if not self.compiled.fast:  # the general path: a target of the batch's objectives
            renderer = self.renderer(target, settings)
        else:
            if lr not in self._renderers:
                self._renderers[lr] = self.renderer(target, settings)
            renderer = self._renderers[lr]
        items = [item for item in items for _ in range(group)]
        keys = [targets.variant_key(seed, u, k) for u in chunk for k in range(group)]
        starts = [self.starts[u] for u in chunk for _ in range(group)] if self.starts else None
        results = renderer.render(items, starts, progress=progress, keys=keys)
        return {(u, k): dataclasses.replace(results[i * group + k], index=u)
                for i, u in enumerate(chunk) for k in range(group)}

    def _rescuers(self) -> list | None:
        if not self.compiled.fast or not self.settings.rescue:
            return None
        seed, per_batch = self.optimizer.seed, self.batch // self.group
        return [rescue.Rescuer(self.compiled.target, self.preprocess, self.image_shape,
                               dataclasses.replace(self.optimizer, diversity=1,
                                                   seed=seed + k * targets.VARIANT_SEED_STRIDE), per_batch)
                for k in range(self.group)]

    def batches(self, units: list[int], tick):
        """Yield the records of `units`, a batch at a time. `tick(count, more=0)` hears of filter-steps
        done and of `more` steps the rescue adds; it is called with 0 between batches (to ask whether to
        stop)."""
        group, per_batch = self.group, self.batch // self.group
        own_rescuers = self._rescuers()
        for start in range(0, len(units), per_batch):
            tick(0)
            chunk = units[start:start + per_batch]
            results = self._render(chunk, self.optimizer.lr, tick)
            runner, rescuers, rerun = self, own_rescuers, set()
            if self.fallback is not None:  # rendered again in float32: a unit not finite or not clearly converged
                rerun = {u for u in chunk if not all(results[u, k].finite and results[u, k].strong
                                                     for k in range(group))}
                if rerun:
                    runner, rescuers = self._float32()
                    results.update(runner._render_all([u for u in chunk if u in rerun], self.optimizer.lr))
            faulty = [u for u in chunk if not all(results[u, k].finite for k in range(group))]
            results.update(runner._render_all(faulty, self.optimizer.lr * RETRY_LR_FACTOR))
            rescued = set()
            for k, rescuer in enumerate(rescuers or ()):  # the rescue knows pictures by their filter (item)
                pictures = [dataclasses.replace(results[u, k], index=self.item[u]) for u in chunk]
                more = rescuer.steps(sum(not r.converged for r in pictures))
                if more:
                    tick(0, more)
                pictures, saved = rescuer.rescue(pictures, progress=tick)
                results.update({(u, k): dataclasses.replace(r, index=u) for u, r in zip(chunk, pictures)})
                rescued |= {(u, k) for u in chunk if self.item[u] in saved}
            if group == 1:
                yield [record(results[u, 0], u in faulty, (u, 0) in rescued, float32=u in rerun) for u in chunk]
            else:
                yield [group_record(u, [record(results[u, k], u in faulty, (u, k) in rescued, variant=k,
                                               float32=u in rerun) for k in range(group)]) for u in chunk]

    def _render_all(self, units: list[int], lr: float) -> dict:
        """_render of `units` in batches (no progress): the NaN restart and the float32 fallback."""
        results, per_batch = {}, self.batch // self.group
        for first in range(0, len(units), per_batch):
            results.update(self._render(units[first:first + per_batch], lr, None))
        return results

    def _float32(self) -> tuple:
        """(the float32 Schedule of the fallback, its rescuers), made on first need."""
        if self._precise is None:
            precise = self.fallback()
            self._precise = precise, precise._rescuers()
        return self._precise


def build_tile(loaded, layer: str, cut, objective: str, settings: Settings, image_shape):
    """The tiles.Tile of `layer` (its models.Cut `cut`; `loaded` the models.LoadedModel; `objective` what
    each filter's goal is, options.OBJECTIVES) when the tile start applies: --tile, a parameterization
    that takes it (not one of params.UNTILED), a layer of channels whose filters' goals are channels, and
    a model and cut that run at half the size; else None. The Schedule compiles the goals at its size."""
    if not settings.tile or settings.param in params.UNTILED:
        return None
    if objective != "channel" or cut.kind != models.KIND_CHANNELS:
        return None
    size = tiles.tile_size(image_shape[:2])
    steps, full_steps = tiles.split_steps(settings.optimizer.steps)
    at_size = models.at_size(loaded, size) if size and steps else None
    if at_size is None:
        return None
    shape = (*size, image_shape[2])
    small_cut = models.cut(at_size, layer)
    if not models.runs_on(small_cut.forward, shape):  # a model may take the size where its cut, built for one, does not
        return None
    return tiles.Tile({layer: small_cut}, params.resolve(settings.param, settings.decay, small_cut.output_shape, shape),
                      shape, steps, full_steps)
