"""The library entry points: `run(spec)` renders every requested layer, `layers(...)` lists them.

Everything a run could fail on (model, weights, layers, filters, seed images, output folder) is
checked before the first file is written.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, images, models, outputs
from .config import DEFAULT_SIZE, RunSpec, parse_filters
from .errors import LayerError, SpecError


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """What one layer's rendering gave."""

    layer: str
    folder: Path
    filters: int
    converged: int
    failed: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Plan:
    """One layer's work, fully checked: the cut model, the filters, their start images."""

    layer: str
    cut: models.Cut
    filters: list[int]
    starts: dict[int, np.ndarray] | None
    folder: Path


def layers(model: str, weights: str, preprocess: str | None = None, size: int | None = None):
    """Rows of `models.LayerInfo` for every layer of the model."""
    return models.list_layers(models.load(model, weights, preprocess, size).model)


def load_model(spec: RunSpec) -> models.LoadedModel:
    """The model for `spec`; an application whose classifier holds a requested layer is built with it."""
    loaded = models.load(spec.model, spec.weights, spec.preprocess, spec.size)
    names = {path for path, _ in models.walk(loaded.model)}
    missing = [layer for layer in spec.layers if layer not in names]
    if missing and spec.model in models.APPLICATIONS:
        app = models.APPLICATIONS[spec.model]
        top = models.load(spec.model, "none", spec.preprocess, top=True)
        if all(layer in {path for path, _ in models.walk(top.model)} for layer in missing):
            if spec.size not in (None, app.size):
                raise SpecError(f"layer '{missing[0]}' is in {spec.model}'s classifier, which takes "
                                f"{app.size}x{app.size} images; use --size {app.size} or leave --size out")
            return models.load(spec.model, spec.weights, spec.preprocess, top=True)
    return loaded


def plan(spec: RunSpec, loaded: models.LoadedModel, size: int) -> list[Plan]:
    """Check every layer, filter index and seed image of the run; nothing is written."""
    filter_spec = parse_filters(spec.filters)
    plans = []
    for layer in dict.fromkeys(spec.layers):
        count = models.check_visualizable(loaded.model, layer)
        filters = filter_spec.resolve(count, spec.seed, layer)
        starts = _seed_images(spec.seed_image, filters, size) if spec.seed_image else None
        folder = Path(spec.out) / outputs.layer_dirname(layer)
        plans.append(Plan(layer, models.cut(loaded.model, layer), filters, starts, folder))
    return plans


def _seed_images(path: str, filters: list[int], size: int) -> dict[int, np.ndarray]:
    """Start images: one file for every filter, or a folder of a previous run's filter_NNNN.png."""
    source = Path(path)
    if source.is_dir():
        files = {f: source / outputs.filter_filename(f) for f in filters}
        missing = [f for f, file in files.items() if not file.is_file()]
        if missing:
            raise SpecError(f"--seed-image folder {source} has no {outputs.filter_filename(missing[0])}; "
                            "give the layer folder of a run over the same filters, or one image file")
    elif source.is_file():
        files = dict.fromkeys(filters, source)
    else:
        raise SpecError(f"--seed-image {source} does not exist; give an image file or a folder of filter PNGs")
    loaded = {}
    for f, file in files.items():
        try:
            loaded[f] = images.load_rgb(str(file), size)
        except Exception as exc:
            raise SpecError(f"--seed-image {file} is not a readable image ({type(exc).__name__}); "
                            "give a PNG or JPEG") from None
    return loaded


def run(spec: RunSpec) -> list[LayerReport]:
    """Render every layer of `spec` into `spec.out`; returns one report per layer."""
    import tensorflow as tf

    from . import optimize

    outputs.check_writable(spec.out)
    loaded = load_model(spec)
    size = spec.size or loaded.size or DEFAULT_SIZE
    plans = plan(spec, loaded, size)
    tf.random.set_seed(spec.seed)
    settings = optimize.Settings(spec.steps, spec.lr, spec.tv_weight, spec.lp_weight, spec.lp_norm,
                                 spec.jitter, spec.seed)
    preprocess = models.preprocess_fn(loaded.preprocess)
    return [_render_layer(spec, loaded, size, p, settings, preprocess) for p in plans]


def _render_layer(spec, loaded, size, plan_, settings, preprocess) -> LayerReport:
    from tqdm import tqdm

    from . import optimize

    batch = spec.batch or optimize.auto_batch(plan_.cut.model, size, len(plan_.filters))
    batch = min(batch, len(plan_.filters))
    renderer = optimize.Renderer(plan_.cut, preprocess, size, batch, settings)
    manifest = _manifest(spec, loaded, size, batch, plan_.layer)
    results = []
    total = len(plan_.filters) * spec.steps
    bar = tqdm(total=total, desc=f"{plan_.layer} ({len(plan_.filters)} filters)", unit="step",
               disable=spec.quiet or not sys.stderr.isatty(), file=sys.stderr, dynamic_ncols=True)
    with bar:
        for start in range(0, len(plan_.filters), batch):
            chunk = plan_.filters[start:start + batch]
            seeds = [plan_.starts[f] for f in chunk] if plan_.starts else None
            for result in renderer.render(chunk, seeds, progress=bar.update):
                outputs.write_png(plan_.folder / outputs.filter_filename(result.index), result.image)
                manifest["filters"].append(_filter_entry(result))
                results.append(result)
            outputs.write_manifest(plan_.folder, manifest)
    tiles = [r.image for r in results]
    palette = images.palette(tiles, [str(r.index) for r in results], spec.cols, plan_.layer)
    outputs.write_png(plan_.folder / outputs.PALETTE, palette)
    failed = tuple(r.index for r in results if not r.converged)
    return LayerReport(plan_.layer, plan_.folder, len(results), len(results) - len(failed), failed)


def _filter_entry(result) -> dict:
    return {
        "index": result.index,
        "file": outputs.filter_filename(result.index),
        "steps": result.steps,
        "activation": round(result.activation, 6),
        "noise_activation": round(result.noise_activation, 6),
        "loss": round(result.loss, 6),
        "tv": round(result.tv, 6),
        "lp": round(result.lp, 6),
        "scale": round(result.scale, 6),
        "converged": bool(result.converged),
        "seconds": round(result.seconds, 3),
    }


def _manifest(spec: RunSpec, loaded, size: int, batch: int, layer: str) -> dict:
    import keras
    import PIL
    import tensorflow as tf

    params = dataclasses.asdict(spec)
    params.update(size=size, batch=batch, layers=list(spec.layers))
    for key in ("out", "quiet"):
        params.pop(key)
    return {
        "filtervis": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "layer": layer,
        "model": {"name": loaded.name, "weights": loaded.weights, "preprocess": loaded.preprocess,
                  "input_size": loaded.size},
        "params": params,
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__},
        "filters": [],
    }
