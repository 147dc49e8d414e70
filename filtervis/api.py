"""The Python API: `render(model, layer, filters=..., **options)` and `render(model, objective=...)`.

    import filtervis
    result = filtervis.render(model, "block3_conv1", filters="0-7", steps=64, size=96)
    result.images[0]          # uint8 [H, W, C], as filter_0000.png holds it
    result.filters[0].converged
    result.palette()          # the labeled palette, a PIL image (a notebook shows the result as it)
    result.save("out")        # out/block3_conv1/{filter_NNNN.png, palette.png, manifest.json}

`model` is a keras.Model in memory (functional, Sequential or subclassed) or anything `filtervis run
--model` takes. The options are the CLI's (underscores for dashes, same defaults, same checks and
errors). `render` builds a RunSpec and runs the same flow as `filtervis run` (run.execute) with a sink
that keeps the records in memory (result.MemorySink); `prepare` gives the frozen plan.LayerPlan of a
render without optimizing anything.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import models, plan as planning, run
from .options import DEFAULTS, OPTIONS, RENDER_OPTIONS, RunSpec
from .errors import SpecError
from .records import FilterRecord  # noqa: F401 (part of this module's API)
from .result import MemorySink, Result  # noqa: F401 (Result: part of this module's API)


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


def _request(model, layer, filters, objective, options: dict) -> tuple[RunSpec, list | None]:
    """(the RunSpec of a render call, its list of objectives.Objective or None): the checks of a call
    that names a layer and filters, or objectives."""
    goals = _objective_list(objective)
    pictures = options.get("diversity", 1)
    if goals is not None and isinstance(pictures, int) and pictures > 1 and not all(g.group_parts for g in goals):
        raise SpecError(f"diversity={pictures} with objective=...: give each objective a diversity term, e.g. "
                        f"objective - 6 * objectives.diversity(layer) (what --diversity adds to a layer's filters)")
    if goals is not None:
        if layer is not None or filters is not None:
            raise SpecError("render() takes either a layer and filters or objective=...; not both")
        options["objective"] = DEFAULTS.objective
        layer = list(dict.fromkeys(name for goal in goals for name in goal.layers))[0]
    elif objective is not None:
        options["objective"] = objective
    spec = spec_of(model, layer, filters, options)
    if goals is None and not layer:
        raise SpecError("--layer is required: name at least one layer (`filtervis layers` lists them)")
    return spec, goals


def prepare(model, layer: str | None = None, filters=None, *, objective=None, **options) -> planning.LayerPlan:
    """The plan.LayerPlan of a render (arguments as for `render`, one layer), checked, without optimizing
    anything: the model, the layer, the filters, the seed images, the batch."""
    spec, goals = _request(model, layer, filters, objective, dict(options))
    (plan,) = planning.make(spec, planning.load(model, spec), goals)
    return plan


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


def render(model, layer: str | None = None, filters=None, *, objective=None, progress=None, on_batch=None,
           stop=None, **options):
    """Render filters of one layer of `model`, or objectives (see the module doc).

    `layer` and `filters` (None: all; an index; a list of indices; or `--filters` text such as "0-7",
    "first:8" or "random:16"); a `layer` of "all" or a shell-style pattern ("block*_conv*") renders every
    layer it matches and returns {layer: Result} in the model's order (indices past a layer's filters
    are left out). Or `objective=`: a filtervis.objectives value, or a list of them (one image each);
    `objective="neuron"` keeps the CLI's meaning (each filter's centre unit). `**options` are the CLI's
    (steps, lr, size, tv_weight, ..., seed, batch). `progress(done)` (and `progress(done, more)` when the
    rescue adds `more` steps) hears of filter-steps done, in output-size steps; `on_batch(plan, records)`
    gets each finished batch; `stop()` is asked between chunks of steps: when it returns a signal number,
    `errors.Interrupted` is raised. Deterministic: the same call gives the same images.
    """
    from .progress import Calls

    spec, goals = _request(model, layer, filters, objective, dict(options))
    results = run.execute(spec, model, MemorySink(on_batch), Calls(progress), stop, goals)
    if goals is None and models.is_pattern(layer):
        return {result.layer: result for result in results}
    (result,) = results
    return result


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
    loaded = planning.load(model, spec)
    shapes = models.layer_shapes(loaded)
    preprocess_fn = models.preprocess_fn(loaded.preprocess, loaded.channels)
    values = {}
    for name in goals[0].layers:
        cut = models.cut(loaded, name, shapes)
        values[name] = cut.activation(cut.forward(preprocess_fn(tf.constant(pixels))))
    return goals[0].value(values, tf.constant(pixels)).numpy()
