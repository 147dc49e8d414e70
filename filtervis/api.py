"""The Python API: `render(model, layer, filters=..., **options)` and `render(model, objective=...)`.

    import filtervis
    result = filtervis.render(model, "block3_conv1", filters="0-7", steps=64, size=96)
    result.images[0]          # uint8 [H, W, C], as filter_0000.png holds it
    result.filters[0].converged
    result.palette()          # the labeled palette, a PIL image (a notebook shows the result as it)
    result.save("out")        # out/block3_conv1/{filter_NNNN.png, palette.png, manifest.json}

`model` is a keras.Model in memory (functional, Sequential or subclassed) or anything `filtervis run
--model` takes. The options are the CLI's (underscores for dashes, same defaults, same checks and
errors). `filtervis run` is a client of this module: per layer it calls `prepare(...)` and
`Job.run(...)` with hooks that write each finished batch to disk.

Rendering one layer: `prepare` loads the model, cuts the layer (models.cut), resolves the filters
and checks everything; `Job.run` hands the batches to a schedule.Schedule (the optimizer, the NaN
restart, the rescue, the tile start, --diversity groups).
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path

import numpy as np

from . import models, optimize, schedule, store, targets, tiles
from .options import DEFAULT_SIZE, DEFAULTS, OPTIONS, RENDER_OPTIONS, RunSpec, parse_filters, size_text
from .errors import Interrupted, SpecError
from .records import FilterRecord  # noqa: F401 (part of this module's API)
from .result import Result

OBJECTIVES_FOLDER = "objectives"  # the layer name (and folder) of a render of objectives
# What one step of one image costs besides the multiply-adds of the layers up to the target, in multiply-adds
# that take as long: per weight of those layers, per pixel of the image (parameterization, transforms, Adam)
# and per step. Fitted on this project's CPU (2 cores): VGG16 hed, each of its 18 layers at 64 and 128 px,
# seconds per image-step against these four counts (the cut's last Conv2D counted for one filter when the
# target computes only the own one): within 14% rms, 38% at worst. Only their ratios matter: a run's rate is
# measured as it runs (run.Progress), these weigh one layer's steps against another's.
STEP_COST_PER_WEIGHT = 70.0
STEP_COST_PER_PIXEL = 15_000.0
STEP_COST_FIXED = 27e6


# --- options -------------------------------------------------------------------------------------

def spec_of(model, layer, filters, options: dict) -> RunSpec:
    """The RunSpec of a `render` call: the CLI's checks and errors for the same options."""
    unknown = sorted(set(options) - set(RENDER_OPTIONS))
    if unknown and unknown[0] in OPTIONS:
        raise SpecError(f"render() has no option '{unknown[0]}': it belongs to files or to the command line; "
                        "write the files with result.save(OUT)")
    if unknown:
        raise SpecError(f"render() got an unknown option '{unknown[0]}'; options are {', '.join(RENDER_OPTIONS)}")
    name = model if isinstance(model, str) else getattr(model, "name", DEFAULTS.model)
    return RunSpec(layers=(layer,) if layer else ("-",), model=str(name), filters=filter_text(filters), **options)


def filter_text(filters) -> str:
    """`filters` as `--filters` writes it: None -> all; an int; a list of ints; or a spec string."""
    if filters is None:
        return DEFAULTS.filters
    if isinstance(filters, str):
        return filters
    if isinstance(filters, numbers.Integral) and not isinstance(filters, bool):
        filters = [filters]
    try:
        values = [int(f) for f in filters if not isinstance(f, bool) and float(f) == int(f)]
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != len(list(filters)) or not values or min(values) < 0:
        raise SpecError(f"filters must be all, an index, a list of indices 0 or more, or a spec such as 0-7 or "
                        f"random:16, but was {filters!r}")
    return ",".join(map(str, values))


def load(model, spec: RunSpec) -> models.LoadedModel:
    """The model of a `render` call: a LoadedModel as it is, a keras.Model described, or loaded as
    `--model` (an application whose classifier holds a requested layer is built with it)."""
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


# --- seed images ---------------------------------------------------------------------------------

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


def seed_images(path: str, filters: list[int], image_shape) -> dict[int, np.ndarray]:
    """Start images: one file for every filter, or a folder of a previous run's filter_NNNN.png."""
    from . import images, store

    source = Path(path)
    if source.is_dir():
        files = {f: source / store.filter_filename(f) for f in filters}
        missing = [f for f, file in files.items() if not file.is_file()]
        if missing:
            raise SpecError(f"--seed-image folder {source} has no {store.filter_filename(missing[0])}; "
                            "give the layer folder of a run over the same filters, or one image file")
    elif source.is_file():
        files = dict.fromkeys(filters, source)
    else:
        raise SpecError(f"--seed-image {source} does not exist; give an image file or a folder of filter PNGs")
    loaded = {}
    for f, file in files.items():
        try:
            loaded[f] = images.load_image(str(file), image_shape)
        except Exception as exc:
            raise SpecError(f"--seed-image {file} is not a readable image ({type(exc).__name__}); "
                            "give a PNG or JPEG") from None
    return loaded


# --- one layer's job -----------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
    """One layer's rendering, fully checked (`prepare`): run it with `run(filters)`."""

    spec: RunSpec
    loaded: models.LoadedModel
    layer: str
    image_shape: tuple
    filters: list[int]  # the filters the options ask for, in order
    cut: object = None  # graph.Cut (None for objectives)
    shapes: tuple = ()  # output shapes of the layers a forward pass reaches up to the layer
    starts: dict | None = None
    objectives: tuple = ()  # objectives.Objective per image, when rendering objectives
    batch: int | None = None  # None until `run` chose it (see memory.plan_memory)
    memory: object = None  # memory.MemoryPlan when the batch was chosen automatically
    paths: tuple = ()  # the paths of `shapes`' layers
    clipped: str | None = None  # what --filters asked for past the layer's filters (a pattern's layer), left out
    precision: object = None  # models.Precision: what the model's layers compute in (None: float32, as loaded)
    original: object = None  # the LoadedModel before --precision rebuilt it (the float32 fallback's)
    _tile: object = dataclasses.field(default=None, repr=False)  # tiles.Tile, () when none; see tile()

    @property
    def preprocess(self):
        return models.preprocess_fn(self.loaded.preprocess, self.loaded.channels)

    @property
    def compute_dtype(self) -> str:
        """The type the model's layers compute in (--precision, resolved)."""
        return self.precision.used if self.precision is not None else "float32"

    def choose_batch(self, count: int, batch: int | None = None) -> int:
        """The batch for `count` filters: --batch, else `batch` (an earlier run's), else the memory
        plan's; the plan is made (`memory`) whenever --batch is not given. SpecError when not even
        one image fits the memory budget."""
        from . import memory

        group = self.spec.diversity  # images of one filter share a batch
        count = max(1, count) * group
        if self.spec.batch is None:
            self.memory = memory.plan_memory(self.shapes, self.image_shape, count, self.spec.memory_budget,
                                             self.compute_dtype)
        batch = self.spec.batch or batch or self.memory.batch
        self.batch = max(group, min(batch, count) // group * group)
        return self.batch

    def param(self):
        from . import params

        if self.objectives:  # the deepest layer read decides `auto`
            shape = max((c.output_shape for c in self.cut.values()),
                        key=lambda shape: params.downsampling(shape, self.image_shape))
            param = params.resolve(self.spec.param, self.spec.decay, shape, self.image_shape)
        else:
            param = params.resolve(self.spec.param, self.spec.decay, self.cut.output_shape, self.image_shape)
        return param

    def manifest(self, planned=None, part=None) -> dict:
        """The manifest of this job without its filters (see store.new_manifest)."""
        spec, loaded = self.spec, self.loaded
        params = dataclasses.asdict(spec)
        params.update(size=size_text(self.image_shape[:2]), batch=self.batch, layers=list(spec.layers),
                      shard=list(spec.shard) if spec.shard else None, preprocess=loaded.preprocess,
                      param=self.param().name, precision=self.compute_dtype)
        if self.objectives:
            params.update(objective=[repr(o) for o in self.objectives], filters="all")
        model = {"name": loaded.name, "weights": loaded.weights, "preprocess": loaded.preprocess,
                 "input_size": size_text(loaded.size) if loaded.size else None, "input": loaded.input_name,
                 "channels": loaded.channels, "image": models.CHANNEL_NAMES[loaded.channels],
                 "layer_kind": "objectives" if self.objectives else self.cut.kind,
                 "classes": False if self.objectives else self.cut.classes,
                 "precision": self.precision.manifest() if self.precision is not None else None}
        if not self.objectives:  # the model's overview (report.py) shows each layer's type and shape, in order
            model.update(layer_type=type(models.find_layer(loaded.model, self.layer)[-1]).__name__,
                         layer_shape=[None, *self.cut.output_shape], layer_order=len(self.paths) - 1)
        if isinstance(spec.model, str) and Path(spec.model).is_file():
            model["sha256"] = store.file_digest(spec.model)
        manifest = store.new_manifest(self.layer, model, params, list(self.filters if planned is None else planned),
                                      list(self.filters if part is None else part), self.tile_note(), self.memory)
        if self.clipped:
            manifest["clipped"] = self.clipped
        return manifest

    def step_cost(self) -> float:
        """What one step of one image costs, in multiply-adds: those of a forward pass up to the layer
        (each layer's weights times its output's places; the layer itself for one filter when only each
        image's own filter is computed, see models.slices), plus STEP_COST_PER_WEIGHT per weight of those
        layers, STEP_COST_PER_PIXEL per pixel and STEP_COST_FIXED. A proxy for the time of a step, to
        balance shards and estimate a whole run."""
        layers = dict(models.walk(self.loaded.model))
        macs = weights = last = 0.0
        for path, shape in zip(self.paths, self.shapes):
            layer = layers.get(path)
            if layer is None or shape is None or models.graph.children(layer):
                continue
            size = float(np.prod([d or 1 for d in shape]))
            places = size / (shape[-1] or 1) if len(shape) > 1 else 1.0
            count = sum(float(np.prod(w.shape)) for w in layer.weights)
            macs, weights, last = macs + count * places, weights + count, count * places
        cut = self.cut
        if (not self.objectives and not cut.classes and models.slices(cut)
                and models.is_elementwise(cut.activation, (None, *cut.output_shape))):
            macs -= last * (1.0 - 1.0 / cut.filters)
        pixels = float(np.prod(self.image_shape[:2]))
        return macs + STEP_COST_PER_WEIGHT * weights + STEP_COST_PER_PIXEL * pixels + STEP_COST_FIXED

    def run(self, filters: list[int] | None = None, progress=None, on_batch=None, stop=None) -> "Result":
        """Render `filters` (default: all of the job's) batch by batch.

        `progress(done, more=0)` hears of filter-steps done, in output-size steps (a tile step counts
        as its share of the pixels: a layer's work is len(filters) * step_units()), and of `more`
        steps added to the plan by the rescue; `on_batch(job, records)` gets each finished batch;
        `stop()` is asked between chunks of steps: when it returns a signal number,
        `errors.Interrupted` is raised (the batches already given to `on_batch` are finished)."""
        filters = list(self.filters if filters is None else filters)
        if self.batch is None:
            self.choose_batch(len(filters))

        def tick(count, more=0):
            if progress and (count or more):
                progress(count, more) if more else progress(count)
            _check_stop(stop)

        records = []
        for batch_records in self.schedule().batches(filters, tick):
            records += batch_records
            if on_batch:
                on_batch(self, batch_records)
        return Result(self, tuple(records))

    @property
    def cuts(self) -> dict:
        """{layer: graph.Cut} of every layer the job's objectives read."""
        return dict(self.cut) if self.objectives else {self.layer: self.cut}

    def goals(self) -> dict:
        """{unit: objectives.Objective}: each filter's (see targets.unit_goals: its channel, neuron or
        class margin, minus --tv-weight and --lp-weight, the colour range and with --diversity the
        layer's diversity), or each place's in `objectives` (with the colour range, see targets.ranged)."""
        if self.objectives:
            return {place: targets.ranged(goal) for place, goal in enumerate(self.objectives)}
        spec = self.spec
        return dict(zip(self.filters, targets.unit_goals(self.layer, self.filters, spec.objective, self.cut.classes,
                                                         spec.tv_weight, spec.lp_weight, spec.lp_norm,
                                                         spec.diversity)))

    def schedule(self) -> schedule.Schedule:
        """The schedule.Schedule that renders this job's batches."""
        fallback = None if self.compute_dtype == "float32" else self._float32_schedule
        return schedule.Schedule(schedule.Settings.of(self.spec), self.preprocess, self.image_shape, self.batch,
                                 self.param(), self.goals(), self.cuts, starts=self.starts, tile=self.tile(),
                                 fallback=fallback)

    def _float32_schedule(self) -> schedule.Schedule | None:
        """The Schedule of this job's filters in float32 (the fallback of a lower --precision), at
        --batch or at most this job's batch and what float32 activations fit in --memory-budget."""
        original = self.original or self.loaded
        if models.own_precision(original.model) is not None:  # a model of its own mixed policy
            original, _ = models.apply_precision(original, "float32")
        cut = ({name: models.cut(original, name) for name in self.cuts} if self.objectives
               else models.cut(original, self.layer))
        job = dataclasses.replace(self, loaded=original, cut=cut,
                                  precision=models.Precision(self.spec.precision, "float32", "fallback"),
                                  original=None, batch=None, memory=None, _tile=None)
        job.choose_batch(len(self.filters))
        job.batch = min(job.batch, self.batch)
        return job.schedule()

    def target(self):
        """The layer's targets.LayerFilters: its filters' objectives compiled (their scales measured on noise)."""
        return targets.compile_goals(self.goals(), self.cuts, self.preprocess, self.image_shape,
                                     self.spec.seed, self.spec.lp_norm).target

    def renderer(self, batch: int | None = None):
        """The optimize.Renderer `run` uses for a batch of `batch` filters (default: the job's batch)
        at --lr (benchmarks/speed.py times it)."""
        return optimize.Renderer(self.target(), self.preprocess, self.image_shape, batch or self.batch or 1,
                                 optimize.Settings.of(self.spec), self.param())

    def tile(self):
        """The layer's tiles.Tile when the tile start applies (see schedule.build_tile), else None. Built once."""
        if self._tile is None:
            applies = not self.objectives and not self.starts
            self._tile = (applies and schedule.build_tile(self.loaded, self.layer, self.cut, self.goals(),
                                                          schedule.Settings.of(self.spec), self.image_shape,
                                                          self.preprocess)) or ()
        return self._tile or None

    def tile_note(self) -> dict | None:
        """The manifest's `tile`: the tile's size, steps and lr factor, or None when every step ran at
        the output size."""
        tile = self.tile()
        if tile is None:
            return None
        return {"size": size_text(tile.shape[:2]), "steps": tile.steps, "lr_factor": tiles.TILE_LR_FACTOR}

    def step_units(self) -> float:
        """The work of one picture in output-size steps: --steps, or with the tile start its tile steps
        weighted by the tile's share of the pixels, plus its output-size steps."""
        tile = self.tile()
        return float(self.spec.steps) if tile is None else tile.units(self.image_shape)


def _check_stop(stop) -> None:
    signal_number = stop() if stop else None
    if signal_number:
        raise Interrupted(f"interrupted by {signal_name(signal_number)}", signal_number)


def signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def prepare(model, layer: str | None = None, filters=None, *, objective=None, spec: RunSpec | None = None,
            clip: bool = False, shapes: dict | None = None, **options) -> Job:
    """Check a render and build its Job, without optimizing anything: the model, the layer, the
    filters, the seed images. Arguments as for `render`; or `spec`, a whole RunSpec (`filtervis run`'s),
    in place of the options. With `clip` (a layer chosen by a pattern or `all`), filter indices past the
    layer's are left out instead of refused (the manifest says so). `shapes`: the model's
    models.layer_shapes, when known."""
    goals = _objective_list(objective)
    pictures = spec.diversity if spec is not None else options.get("diversity", 1)
    if goals is not None and isinstance(pictures, int) and pictures > 1 and not all(g.group_parts for g in goals):
        raise SpecError(f"diversity={pictures} with objective=...: give each objective a diversity term, e.g. "
                        f"objective - 6 * objectives.diversity(layer) (what --diversity adds to a layer's filters)")
    if goals is not None:
        if layer is not None or filters is not None:
            raise SpecError("render() takes either a layer and filters or objective=...; not both")
        options["objective"] = DEFAULTS.objective
    elif objective is not None:
        options["objective"] = objective
    spec = spec or spec_of(model, layer if goals is None else obj_layers(goals)[0], filters, options)
    if goals is None and not layer:
        raise SpecError("--layer is required: name at least one layer (`filtervis layers` lists them)")
    original = load(model, spec)
    loaded, precision = models.apply_precision(original, spec.precision)
    image_shape = image_shape_of(spec, loaded)
    if spec.alpha and image_shape[2] == 4:
        raise SpecError("--alpha needs a model with 1 or 3 input channels: this model's images have 4, so their "
                        "PNGs have no channel left for transparency; drop --alpha")
    shapes = models.layer_shapes(loaded) if shapes is None else shapes
    if goals is not None:
        layers = obj_layers(goals)
        for name in layers:
            models.check_visualizable(loaded, name, shapes)
        cuts = {name: _cut(loaded, original, name, shapes) for name in layers}
        deepest = max(list(shapes).index(name) for name in layers)
        indices = list(range(len(goals)))
        starts = seed_images(spec.seed_image, indices, image_shape) if spec.seed_image else None
        job = Job(spec, loaded, OBJECTIVES_FOLDER, image_shape, indices, cuts,
                  tuple(shapes.values())[:deepest + 1], starts, tuple(goals), precision=precision, original=original)
        for goal in goals:  # the checks of targets.ObjectiveBatch, before anything runs
            targets.check_objective(goal, cuts)
        targets.check_groups([targets.ranged(goal) for goal in goals], cuts, spec.diversity)
        return job
    count = models.check_visualizable(loaded, layer, shapes)
    wanted = parse_filters(spec.filters)
    indices = wanted.resolve(count, spec.seed, layer, clip=clip)
    starts = seed_images(spec.seed_image, indices, image_shape) if spec.seed_image and indices else None
    upto = list(shapes)[:list(shapes).index(layer) + 1]
    return Job(spec, loaded, layer, image_shape, indices, _cut(loaded, original, layer, shapes),
               tuple(shapes[path] for path in upto), starts, paths=tuple(upto),
               clipped=wanted.clipped(count) if clip else None, precision=precision, original=original)


def _cut(loaded, original, layer: str, shapes):
    """The layer's graph.Cut of `loaded`; when --precision rebuilt the model (`original` before), with
    the float32 cut of `original` as its `exact` (what the run measures with)."""
    cut = models.cut(loaded, layer, shapes)
    if loaded is original:
        return cut
    return dataclasses.replace(cut, exact=models.cut(original, layer, shapes))


def _objective_list(objective):
    """A list of Objectives when `objective` is one or a list of them, None for a `--objective` name."""
    from . import objectives as obj

    if objective is None or isinstance(objective, str):
        return None
    if isinstance(objective, obj.Term):
        objective = obj.Objective(((1.0, objective),))
    goals = [objective] if isinstance(objective, obj.Objective) else list(objective) if isinstance(
        objective, (list, tuple)) else None
    if not goals or not all(isinstance(g, obj.Objective) for g in goals):
        raise SpecError(f"objective must be channel or neuron, an objective built with filtervis.objectives, "
                        f"or a list of them, but was {objective!r}")
    for goal in goals:
        if not goal.layers:
            raise SpecError(f"objective {goal!r} reads no layer; add a layer term such as channel(layer, k)")
    return goals


def obj_layers(goals) -> list[str]:
    return list(dict.fromkeys(name for goal in goals for name in goal.layers))


def render(model, layer: str | None = None, filters=None, *, objective=None, progress=None, on_batch=None,
           stop=None, **options) -> "Result":
    """Render filters of one layer of `model`, or objectives (see the module doc).

    `layer` and `filters` (None: all; an index; a list of indices; or `--filters` text such as "0-7",
    "first:8" or "random:16"); a `layer` of "all" or a shell-style pattern ("block*_conv*") renders every
    layer it matches and returns {layer: Result} in the model's order (indices past a layer's filters
    are left out). Or `objective=`: a filtervis.objectives value, or a list of them (one image each);
    `objective="neuron"` keeps the CLI's meaning (each filter's centre unit). `**options` are the CLI's
    (steps, lr, size, tv_weight, ..., seed, batch); `progress`, `on_batch` and `stop` as for Job.run.
    Deterministic: the same call gives the same images.
    """
    if isinstance(layer, str) and models.is_pattern(layer) and objective is None:
        spec = spec_of(model, layer, filters, options)
        loaded = load(model, spec)
        shapes = models.layer_shapes(loaded)
        return {name: prepare(loaded, name, filters, clip=not explicit, shapes=shapes, **options).run(
                    progress=progress, on_batch=on_batch, stop=stop)
                for name, explicit in models.select_layers(loaded, [layer], shapes)}
    job = prepare(model, layer, filters, objective=objective, **options)
    return job.run(progress=progress, on_batch=on_batch, stop=stop)


def evaluate(model, objective, images, **options) -> np.ndarray:
    """The value of `objective` (a filtervis.objectives value, regularizers included) on `images`
    (uint8, or floats in [0, 1]; [B, H, W, C]): [B] floats. `model` and the model options (weights,
    preprocess, input, unsafe_model) as for `render`."""
    import tensorflow as tf

    goals = _objective_list(objective)
    if goals is None or len(goals) != 1:
        raise SpecError("evaluate() takes one objective built with filtervis.objectives")
    pixels = np.asarray(images)
    if pixels.ndim != 4:
        raise SpecError(f"evaluate() takes a batch of images [B, H, W, C], but got shape {pixels.shape}")
    pixels = pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float32)
    spec = spec_of(model, goals[0].layers[0], None, {"size": tuple(pixels.shape[1:3]), **options})
    loaded = load(model, spec)
    shapes = models.layer_shapes(loaded)
    preprocess_fn = models.preprocess_fn(loaded.preprocess, loaded.channels)
    values = {}
    for name in goals[0].layers:
        cut = models.cut(loaded, name, shapes)
        values[name] = cut.activation(cut.forward(preprocess_fn(tf.constant(pixels))))
    return goals[0].value(values, tf.constant(pixels)).numpy()
