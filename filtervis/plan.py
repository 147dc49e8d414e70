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

from . import filters, memory, models, params, progress, schedule, seeds, targets
from .errors import SpecError
from .options import DEFAULT_SIZE, RunSpec, size_text

OBJECTIVES_FOLDER = "objectives"  # the layer name (and folder) of a render of objectives


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One layer's rendering, fully decided: run it with `schedule().batches(units, tick)`.

    `filters` are the units the options ask for (filter indices, or places in `objectives`), `part`
    this run's part of them (--shard). `cuts` maps every layer the goals read to its models.Cut (the
    float32 cut as its `exact` when --precision rebuilt the model), `goals` each unit to its
    objectives.Objective. `starts` {unit: start picture [H, W, C] in [0, 1]} or None, `start_digests`
    {unit: sha256 of that picture}."""

    spec: RunSpec
    settings: schedule.Settings  # what the schedule and the optimizer read of the run's options, made once
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
        """The layer's models.Cut (a plan of objectives: {layer: Cut})."""
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
        return schedule.Schedule(self.settings, self.preprocess, self.image_shape, self.batch, self.param,
                                 self.goals, self.cuts, starts=self.starts, tile=self.tile, fallback=fallback)

    def target(self):
        """The layer's targets.LayerFilters: its goals compiled (their scales measured on noise)."""
        return targets.compile_goals(self.goals, self.cuts, self.preprocess, self.image_shape, self.spec.seed,
                                     self.spec.lp_norm).target

    def renderer(self, batch: int | None = None):
        """The optimize.Renderer of a batch of `batch` filters (default: the plan's batch) at --lr, as the
        schedule builds it (benchmarks/speed.py times it)."""
        from . import optimize

        return optimize.Renderer(self.target(), self.preprocess, self.image_shape, batch or self.batch,
                                 self.settings.optimizer, self.param)


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
    settings = schedule.Settings.of(spec)
    if objectives is not None:  # the layers the objectives read
        chosen = [(name, True) for name in dict.fromkeys(name for goal in objectives for name in goal.layers)]
    else:
        chosen = models.select_layers(loaded, dict.fromkeys(spec.layers), shapes)
    counts = {name: models.check_visualizable(loaded, name, shapes) for name, _ in chosen}
    cuts = {name: _cut(loaded, original, name, shapes) for name, _ in chosen}
    units = [(OBJECTIVES_FOLDER, True)] if objectives is not None else chosen
    layers = [_layer(spec, settings, loaded, name, counts, cuts, shapes, image_shape, objectives, clip=not explicit)
              for name, explicit in units]
    costs = {one.layer: progress.step_cost(loaded.model, one.paths, one.shapes, one.cuts, one.objectives,
                                           image_shape) for one in layers}
    steps = {one.layer: float(spec.steps) if one.tile is None else one.tile.units(image_shape) for one in layers}
    parts = progress.shard_pairs([(one.layer, list(one.filters), steps[one.layer] * costs[one.layer])
                                  for one in layers], spec.shard)
    dtype = precision.used if precision is not None else "float32"
    batches = {one.layer: memory.choose_batch(one.shapes, image_shape, len(parts[one.layer]), spec.diversity,
                                              spec.batch, earlier(one.layer) if earlier else None,
                                              spec.memory_budget, dtype) for one in layers}
    plans = []
    for one in layers:
        part = tuple(parts[one.layer])
        starts, digests = seeds.read(spec.seed_image, part, image_shape) if spec.seed_image and part else (None, None)
        batch, budget = batches[one.layer]
        plans.append(LayerPlan(spec, settings, one.layer, loaded, original, precision, image_shape, one.filters, part,
                               one.cuts, one.goals, one.shapes, one.paths, one.param, one.tile, batch,
                               costs[one.layer], budget, starts, digests, one.objectives, one.clipped))
    return plans


def _layer(spec: RunSpec, settings, loaded, layer: str, counts: dict, cuts: dict, shapes: dict, image_shape, objectives=None,
           clip: bool = False) -> _Layer:
    """A layer's filters (`clip`: a layer chosen by a pattern or `all` leaves out indices past its filters
    instead of refusing them) and their goals, parameterization and tile start; or a list of objectives,
    one picture each, checked as the schedule's ObjectiveBatch would check them."""
    if objectives is not None:
        for goal in objectives:
            targets.check_objective(goal, cuts)
        ranged = {place: targets.ranged(goal) for place, goal in enumerate(objectives)}
        targets.check_groups(list(ranged.values()), cuts, spec.diversity)
        deepest = max(list(shapes).index(name) for name in cuts)
        shape = max((c.output_shape for c in cuts.values()), key=lambda s: params.downsampling(s, image_shape))
        return _Layer(layer, tuple(range(len(objectives))), cuts, ranged, tuple(shapes.values())[:deepest + 1], (),
                      params.resolve(spec.param, spec.decay, shape, image_shape), None, tuple(objectives))
    cut, count = cuts[layer], counts[layer]
    tile = None if spec.seed_image else schedule.build_tile(loaded, layer, cut, spec.objective, settings, image_shape)
    param = params.resolve(spec.param, spec.decay, cut.output_shape, image_shape)
    wanted = filters.parse_filters(spec.filters)
    chosen = tuple(wanted.resolve(count, spec.seed, layer, clip=clip))
    clipped = wanted.clipped(count) if clip else None
    goals = dict(zip(chosen, targets.unit_goals(layer, chosen, spec.objective, cut.classes, spec.tv_weight,
                                                spec.lp_weight, spec.lp_norm, spec.diversity)))
    upto = list(shapes)[:list(shapes).index(layer) + 1]
    return _Layer(layer, chosen, {layer: cut}, goals, tuple(shapes[path] for path in upto), tuple(upto), param,
                  tile, clipped=clipped)


def _cut(loaded, original, layer: str, shapes):
    """The layer's models.Cut of `loaded`; when --precision rebuilt the model (`original` before), with
    the float32 cut of `original` as its `exact` (what the run measures with)."""
    cut = models.cut(loaded, layer, shapes)
    if loaded is original:
        return cut
    return dataclasses.replace(cut, exact=models.cut(original, layer, shapes))


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
    tile = plan.tile and schedule.build_tile(original, plan.layer, cuts[plan.layer], plan.spec.objective,
                                             plan.settings, plan.image_shape)
    batch, _ = memory.choose_batch(plan.shapes, plan.image_shape, len(plan.filters), plan.spec.diversity,
                                   plan.spec.batch, None, plan.spec.memory_budget, "float32")
    return dataclasses.replace(plan, loaded=original, cuts=cuts, tile=tile or None, batch=min(batch, plan.batch),
                               memory=None, precision=models.Precision(plan.spec.precision, "float32", "fallback"))


def _float32_schedule(plan: LayerPlan) -> schedule.Schedule:
    return float32_plan(plan).schedule()

