"""A run's plan: what each layer's rendering needs, decided and checked before anything runs.

`make(spec, loaded)` turns a RunSpec and a loaded model into one frozen `LayerPlan` per layer: the
layers `--layer` selects (names, patterns, `all`), each one's cut, its filters (this run's part of
them with `--shard`), its objectives, its start pictures (`--seed-image`), its parameterization, its
tile start and its batch. Every check a run can fail on (layer, filter indices, seed images, memory)
happens here, so a run that starts has nothing left to refuse. Nothing is written and nothing is
optimized; a plan is never changed after it is made.

A plan hands its work to the schedule (`LayerPlan.schedule()`); the float32 twin of a plan computing
in a lower type (`float32_plan`) is the schedule's fallback.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import numpy as np

from . import memory, models, params, progress, schedule, targets
from .errors import SpecError
from .filters import parse_filters
from .options import DEFAULT_SIZE, RunSpec, size_text
from .records import filter_filename

OBJECTIVES_FOLDER = "objectives"  # the layer name (and folder) of a render of objectives


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One layer's rendering, fully decided: run it with `schedule().batches(units, tick)`.

    `filters` are the units the options ask for (filter indices, or places in `objectives`), `part`
    this run's part of them (--shard). `cuts` maps every layer the goals read to its graph.Cut (the
    float32 cut as its `exact` when --precision rebuilt the model), `goals` each unit to its
    objectives.Objective. `starts` {unit: start picture [H, W, C] in [0, 1]} or None, `start_digests`
    {unit: sha256 of that picture}."""

    spec: RunSpec
    layer: str
    loaded: models.LoadedModel  # the model as its layers compute (--precision)
    original: models.LoadedModel  # the model as loaded, float32 (the fallback's)
    precision: models.Precision | None
    image_shape: tuple  # (height, width, channels) of the pictures
    filters: tuple
    part: tuple
    cuts: dict
    goals: dict
    shapes: tuple  # output shapes of the layers a forward pass reaches up to the deepest layer read
    paths: tuple  # their paths (a layer's plan only)
    param: object  # params.Pixels, Fourier or Maco
    tile: object  # tiles.Tile when the tile start applies, else None
    batch: int
    cost: float  # what one step of one image costs (progress.step_cost)
    memory: memory.MemoryPlan | None = None  # how the batch was chosen, when --batch was not given
    starts: dict | None = None
    start_digests: dict | None = None
    objectives: tuple = ()  # render(objective=...): one objectives.Objective per unit
    clipped: str | None = None  # what --filters asked for past the layer's filters (a pattern's layer), left out

    @property
    def cut(self):
        """The layer's graph.Cut (a plan of objectives: {layer: Cut})."""
        return dict(self.cuts) if self.objectives else self.cuts[self.layer]

    @property
    def preprocess(self):
        return models.preprocess_fn(self.loaded.preprocess, self.loaded.channels)

    @property
    def compute_dtype(self) -> str:
        """The type the model's layers compute in (--precision, resolved)."""
        return self.precision.used if self.precision is not None else "float32"

    def step_units(self) -> float:
        """The work of one picture in output-size steps: --steps, or with the tile start its tile steps
        weighted by the tile's share of the pixels, plus its output-size steps."""
        return float(self.spec.steps) if self.tile is None else self.tile.units(self.image_shape)

    def tile_note(self) -> dict | None:
        """The manifest's `tile`: the tile's size, steps and lr factor, or None when every step ran at
        the output size."""
        from .tiles import TILE_LR_FACTOR

        if self.tile is None:
            return None
        return {"size": size_text(self.tile.shape[:2]), "steps": self.tile.steps, "lr_factor": TILE_LR_FACTOR}

    def schedule(self) -> schedule.Schedule:
        """The schedule.Schedule that renders this plan's batches; with a lower --precision its
        fallback is the schedule of `float32_plan(self)`, made on first need."""
        fallback = None if self.compute_dtype == "float32" else functools.partial(_float32_schedule, self)
        return schedule.Schedule(self.spec, self.preprocess, self.image_shape, self.batch, self.param, self.goals,
                                 self.cuts, starts=self.starts, tile=self.tile, fallback=fallback)

    def target(self):
        """The layer's targets.LayerFilters: its goals compiled (their scales measured on noise)."""
        return targets.compile_layer(list(self.goals.values()), self.cuts, self.preprocess, self.image_shape,
                                     self.spec.seed, self.spec.lp_norm)[0]

    def renderer(self, batch: int | None = None):
        """The optimize.Renderer of a batch of `batch` filters (default: the plan's batch) at --lr, as the
        schedule builds it (benchmarks/speed.py times it)."""
        from . import optimize

        return optimize.Renderer(self.target(), self.preprocess, self.image_shape, batch or self.batch,
                                 self.spec, self.param)


# --- the model -------------------------------------------------------------------------------------

def load(model, spec: RunSpec) -> models.LoadedModel:
    """The model of a run: a LoadedModel as it is, a keras.Model described, or loaded as `--model`
    (an application whose classifier holds a requested layer is built with it)."""
    if isinstance(model, models.LoadedModel):
        loaded = model
    elif not isinstance(model, str):
        loaded = models.describe(model, None, "memory", spec.preprocess, spec.size, spec.input)
    else:
        loaded = _load_named(spec)
    if loaded.preprocess is None:
        loaded = dataclasses.replace(loaded, preprocess=models.guess_preprocess(loaded))
    return loaded


def _load_named(spec: RunSpec) -> models.LoadedModel:
    loaded = models.load(spec.model, spec.weights, spec.preprocess, spec.size, unsafe=spec.unsafe_model,
                         input_name=spec.input)
    names = {path for path, _ in models.walk(loaded.model)}
    missing = [layer for layer in spec.layers if layer not in names and layer != "-" and not models.is_pattern(layer)]
    if missing and spec.model in models.APPLICATIONS:
        app = models.APPLICATIONS[spec.model]
        top = models.load(spec.model, "none", spec.preprocess, top=True)
        if all(layer in {path for path, _ in models.walk(top.model)} for layer in missing):
            if spec.size not in (None, (app.size, app.size)):
                raise SpecError(f"layer '{missing[0]}' is in {spec.model}'s classifier, which takes "
                                f"{app.size}x{app.size} images; use --size {app.size} or leave --size out")
            return models.load(spec.model, spec.weights, spec.preprocess, top=True)
    return loaded


def image_shape_of(spec: RunSpec, loaded: models.LoadedModel) -> tuple[int, int, int]:
    """(height, width, channels) of the pictures: --size, else the model's input size, else DEFAULT_SIZE."""
    return (*(spec.size or loaded.size or (DEFAULT_SIZE, DEFAULT_SIZE)), loaded.channels)


# --- seed images -----------------------------------------------------------------------------------

def check_seed_source(path: str) -> None:
    """The cheap checks of --seed-image, before the model is loaded: it exists; a file is an image."""
    source = Path(path)
    if not source.exists():
        raise SpecError(f"--seed-image {source} does not exist; give an image file or a folder of filter PNGs")
    if source.is_file():
        from PIL import Image

        try:
            with Image.open(source) as image:
                image.verify()
        except Exception as exc:
            raise SpecError(f"--seed-image {source} is not a readable image ({type(exc).__name__}); "
                            "give a PNG or JPEG") from None


def read_starts(path: str, units, image_shape) -> tuple[dict, dict]:
    """({unit: start picture [H, W, C] float32 in [0, 1]}, {unit: its sha256}): one image file for every
    unit, or a folder of a previous run's filter_NNNN.png."""
    from . import images

    source = Path(path)
    if source.is_dir():
        files = {f: source / filter_filename(f) for f in units}
        missing = [f for f, file in files.items() if not file.is_file()]
        if missing:
            raise SpecError(f"--seed-image folder {source} has no {filter_filename(missing[0])}; "
                            "give the layer folder of a run over the same filters, or one image file")
    elif source.is_file():
        files = dict.fromkeys(units, source)
    else:
        raise SpecError(f"--seed-image {source} does not exist; give an image file or a folder of filter PNGs")
    starts = {}
    for f, file in files.items():
        try:
            starts[f] = images.load_image(str(file), image_shape)
        except Exception as exc:
            raise SpecError(f"--seed-image {file} is not a readable image ({type(exc).__name__}); "
                            "give a PNG or JPEG") from None
    digests = {f: hashlib.sha256(np.ascontiguousarray(start, np.float32).tobytes()).hexdigest()
               for f, start in starts.items()}
    return starts, digests


# --- the plan --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Layer:
    """A layer's part of the plan that does not depend on the others (before --shard and the batch)."""

    layer: str
    filters: tuple
    cuts: dict
    goals: dict
    shapes: tuple
    paths: tuple
    param: object
    tile: object
    objectives: tuple = ()
    clipped: str | None = None


def make(spec: RunSpec, original: models.LoadedModel, objectives=None, earlier=None) -> list[LayerPlan]:
    """The frozen plan of every layer of a run (see the module doc), in the model's order; or, with
    `objectives` (a list of objectives.Objective), the one plan rendering them. `earlier(layer)`: the
    batch an earlier run into the same folder chose (--resume keeps it unless --batch is given)."""
    loaded, precision = models.apply_precision(original, spec.precision)
    image_shape = image_shape_of(spec, loaded)
    if spec.alpha and image_shape[2] == 4:
        raise SpecError("--alpha needs a model with 1 or 3 input channels: this model's images have 4, so their "
                        "PNGs have no channel left for transparency; drop --alpha")
    shapes = models.layer_shapes(loaded)
    seeded = bool(spec.seed_image)
    if objectives is not None:
        layers = [_objectives(spec, loaded, original, objectives, shapes, image_shape)]
    else:
        if not spec.layers:
            raise SpecError("--layer is required: name at least one layer (`filtervis layers` lists them)")
        layers = [_channels(spec, loaded, original, layer, not explicit, shapes, image_shape, seeded)
                  for layer, explicit in models.select_layers(loaded, dict.fromkeys(spec.layers), shapes)]
    costs = {one.layer: progress.step_cost(loaded.model, one.paths, one.shapes, one.cuts, one.objectives,
                                           image_shape) for one in layers}
    parts = shard_pairs([(one.layer, list(one.filters), _units(spec, one, image_shape) * costs[one.layer])
                         for one in layers], spec.shard)
    plans = []
    for one in layers:
        part = tuple(parts[one.layer])
        starts, digests = read_starts(spec.seed_image, part, image_shape) if seeded and part else (None, None)
        batch, budget = memory.choose_batch(one.shapes, image_shape, len(part), spec.diversity, spec.batch,
                                            earlier(one.layer) if earlier else None, spec.memory_budget,
                                            precision.used if precision is not None else "float32")
        plans.append(LayerPlan(spec, one.layer, loaded, original, precision, image_shape, one.filters, part,
                               one.cuts, one.goals, one.shapes, one.paths, one.param, one.tile, batch,
                               costs[one.layer], budget,
                               starts, digests, one.objectives, one.clipped))
    return plans


def _units(spec: RunSpec, one: _Layer, image_shape) -> float:
    return float(spec.steps) if one.tile is None else one.tile.units(image_shape)


def _channels(spec, loaded, original, layer: str, clip: bool, shapes: dict, image_shape, seeded: bool) -> _Layer:
    """A layer's filters: their indices (`clip`: a layer chosen by a pattern or `all` leaves out indices
    past its filters instead of refusing them), cut, goals, parameterization and tile start."""
    count = models.check_visualizable(loaded, layer, shapes)
    wanted = parse_filters(spec.filters)
    filters = tuple(wanted.resolve(count, spec.seed, layer, clip=clip))
    cut = _cut(loaded, original, layer, shapes)
    goals = dict(zip(filters, targets.unit_goals(layer, filters, spec.objective, cut.classes, spec.tv_weight,
                                                 spec.lp_weight, spec.lp_norm, spec.diversity)))
    upto = list(shapes)[:list(shapes).index(layer) + 1]
    preprocess = models.preprocess_fn(loaded.preprocess, loaded.channels)
    tile = None if seeded else schedule.build_tile(loaded, layer, cut, goals, spec, image_shape, preprocess)
    return _Layer(layer, filters, {layer: cut}, goals, tuple(shapes[path] for path in upto), tuple(upto),
                  params.resolve(spec.param, spec.decay, cut.output_shape, image_shape), tile,
                  clipped=wanted.clipped(count) if clip else None)


def _objectives(spec, loaded, original, goals, shapes: dict, image_shape) -> _Layer:
    """A list of objectives, one picture each: the layers they read, cut; checked as the schedule's
    ObjectiveBatch would check them."""
    layers = list(dict.fromkeys(name for goal in goals for name in goal.layers))
    for name in layers:
        models.check_visualizable(loaded, name, shapes)
    cuts = {name: _cut(loaded, original, name, shapes) for name in layers}
    deepest = max(list(shapes).index(name) for name in layers)
    for goal in goals:
        targets.check_objective(goal, cuts)
    ranged = {place: targets.ranged(goal) for place, goal in enumerate(goals)}
    targets.check_groups(list(ranged.values()), cuts, spec.diversity)
    shape = max((c.output_shape for c in cuts.values()), key=lambda s: params.downsampling(s, image_shape))
    return _Layer(OBJECTIVES_FOLDER, tuple(range(len(goals))), cuts, ranged, tuple(shapes.values())[:deepest + 1], (),
                  params.resolve(spec.param, spec.decay, shape, image_shape), None, tuple(goals))


def _cut(loaded, original, layer: str, shapes):
    """The layer's graph.Cut of `loaded`; when --precision rebuilt the model (`original` before), with
    the float32 cut of `original` as its `exact` (what the run measures with)."""
    cut = models.cut(loaded, layer, shapes)
    if loaded is original:
        return cut
    return dataclasses.replace(cut, exact=models.cut(original, layer, shapes))


def shard_pairs(layers: list[tuple[str, list[int], float]], shard: tuple[int, int] | None) -> dict[str, list[int]]:
    """{layer: its filters in this run's part}: `layers` are (name, filters, cost of one filter) in order;
    --shard K/N gives the K-th of N parts of all the (layer, filter) pairs, of about equal cost: the pairs,
    costliest first (then in order), each go to the part with the least cost so far (the first of equals).
    Pairs of equal cost are dealt round robin, so one layer's filters go to the parts as every N-th
    filter from the K-th. The parts depend only on `layers`."""
    if shard is None:
        return {name: list(filters) for name, filters, _ in layers}
    k, n = shard
    pairs = sorted(((cost, i, j, name, f) for i, (name, filters, cost) in enumerate(layers)
                    for j, f in enumerate(filters)), key=lambda pair: (-pair[0], pair[1], pair[2]))
    loads, mine = [0.0] * n, {name: [] for name, _, _ in layers}
    for cost, _, _, name, f in pairs:
        part = loads.index(min(loads))
        loads[part] += cost
        if part == k - 1:
            mine[name].append(f)
    order = {name: {f: j for j, f in enumerate(filters)} for name, filters, _ in layers}
    return {name: sorted(chosen, key=order[name].get) for name, chosen in mine.items()}


# --- the float32 fallback --------------------------------------------------------------------------

def float32_plan(plan: LayerPlan) -> LayerPlan:
    """The plan of `plan`'s filters in float32 (the fallback of a lower --precision): the model as
    loaded (a model of its own mixed policy rebuilt in float32), its cuts and tile, at --batch or at
    most `plan`'s batch and what float32 activations of all its filters fit in --memory-budget."""
    original = plan.original
    if models.own_precision(original.model) is not None:  # a model of its own mixed policy
        original, _ = models.apply_precision(original, "float32")
    shapes = models.layer_shapes(original)
    cuts = {name: models.cut(original, name, shapes) for name in plan.cuts}
    tile = plan.tile and schedule.build_tile(original, plan.layer, cuts[plan.layer], plan.goals, plan.spec,
                                             plan.image_shape, models.preprocess_fn(original.preprocess,
                                                                                    original.channels))
    batch, _ = memory.choose_batch(plan.shapes, plan.image_shape, len(plan.filters), plan.spec.diversity,
                                   plan.spec.batch, None, plan.spec.memory_budget, "float32")
    return dataclasses.replace(plan, loaded=original, cuts=cuts, tile=tile or None, batch=min(batch, plan.batch),
                               memory=None, precision=models.Precision(plan.spec.precision, "float32", "fallback"))


def _float32_schedule(plan: LayerPlan) -> schedule.Schedule:
    return float32_plan(plan).schedule()

