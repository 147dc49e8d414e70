"""The library entry points: `run(spec)` renders every requested layer, `layers(...)` lists them.

Everything a run could fail on (model, weights, layers, filters, seed images, output folder) is
checked before the first file is written. Then each layer is rendered batch by batch; after every
batch its PNGs are on disk and the manifest lists exactly them, so a run stopped at any point (a
signal, a full disk) keeps what it finished and `--resume` goes on from there.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, images, models, outputs, report
from .config import DEFAULT_SIZE, RunSpec, parse_filters, shard_part, size_text
from .errors import Interrupted, SpecError

RETRY_LR_FACTOR = 0.1  # a filter whose image or loss turned NaN/Inf is restarted once with this times --lr
# Parameters that do not change a filter's image: runs that differ only in these may be resumed and stitched.
UNCOMPARED_PARAMS = frozenset({"batch", "cols", "filters", "layers", "shard", "resume", "unsafe_model",
                               "memory_budget", "report"})
STATUS_DONE, STATUS_FAILED = "done", "failed"  # failed: NaN/Inf even after the restart; no PNG
STATUS_DEAD = "dead"  # nothing the rescue tried fired the filter (see rescue.py); it has a PNG all the same
WITH_PNG = (STATUS_DONE, STATUS_DEAD)


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """What one layer's rendering gave."""

    layer: str
    folder: Path
    filters: int
    converged: int
    failed: tuple[int, ...]  # did not converge (includes `faulty`, not `dead`)
    faulty: tuple[int, ...] = ()  # NaN/Inf even after a restart with a smaller step: no PNG
    dead: tuple[int, ...] = ()  # nothing fired them (see rescue.py): not counted as failures


@dataclasses.dataclass(frozen=True)
class Plan:
    """One layer's work, fully checked: the cut model, the filters, their start images, and the
    output shapes of the layers up to it (for the memory plan)."""

    layer: str
    cut: models.Cut
    filters: list[int]  # this run's part (all of `planned` unless --shard)
    starts: dict[int, np.ndarray] | None
    folder: Path
    planned: list[int]  # every filter the spec asks for in this layer, over all shards
    shapes: tuple = ()  # output shapes (without batch) of the layers a forward pass reaches up to this one


def layers(model: str, weights: str, preprocess: str | None = None, size=None, unsafe_model: bool = False,
           input_name: str | None = None, show_all: bool = False):
    """(the models.LoadedModel, rows of `models.LayerInfo` for the layers a forward pass reaches)."""
    loaded = models.load(model, weights, preprocess, size, unsafe=unsafe_model, input_name=input_name)
    return loaded, models.list_layers(loaded, show_all)


def load_model(spec: RunSpec) -> models.LoadedModel:
    """The model for `spec`; an application whose classifier holds a requested layer is built with it."""
    loaded = models.load(spec.model, spec.weights, spec.preprocess, spec.size, unsafe=spec.unsafe_model,
                         input_name=spec.input)
    names = {path for path, _ in models.walk(loaded.model)}
    missing = [layer for layer in spec.layers if layer not in names]
    if missing and spec.model in models.APPLICATIONS:
        app = models.APPLICATIONS[spec.model]
        top = models.load(spec.model, "none", spec.preprocess, top=True)
        if all(layer in {path for path, _ in models.walk(top.model)} for layer in missing):
            if spec.size not in (None, (app.size, app.size)):
                raise SpecError(f"layer '{missing[0]}' is in {spec.model}'s classifier, which takes "
                                f"{app.size}x{app.size} images; use --size {app.size} or leave --size out")
            return models.load(spec.model, spec.weights, spec.preprocess, top=True)
    return loaded


def plan(spec: RunSpec, loaded: models.LoadedModel, image_shape) -> list[Plan]:
    """Check every layer, filter index and seed image of the run; nothing is written."""
    filter_spec = parse_filters(spec.filters)
    plans, folders = [], {}
    shapes = models.layer_shapes(loaded)
    for layer in dict.fromkeys(spec.layers):
        count = models.check_visualizable(loaded, layer, shapes)
        planned = filter_spec.resolve(count, spec.seed, layer)
        filters = shard_part(planned, spec.shard)
        starts = _seed_images(spec.seed_image, filters, image_shape) if spec.seed_image and filters else None
        folder = Path(spec.out) / outputs.layer_dirname(layer)
        if folder in folders:
            raise SpecError(f"layers '{folders[folder]}' and '{layer}' would share the folder {folder}; "
                            "visualize them in separate runs with different --out")
        folders[folder] = layer
        upto = list(shapes)[:list(shapes).index(layer) + 1]
        plans.append(Plan(layer, models.cut(loaded, layer, shapes), filters, starts, folder, planned,
                          tuple(shapes[path] for path in upto)))
    return plans


def _check_seed_source(path: str) -> None:
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


def _seed_images(path: str, filters: list[int], image_shape) -> dict[int, np.ndarray]:
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
            loaded[f] = images.load_image(str(file), image_shape)
        except Exception as exc:
            raise SpecError(f"--seed-image {file} is not a readable image ({type(exc).__name__}); "
                            "give a PNG or JPEG") from None
    return loaded


def run(spec: RunSpec, stop=None) -> list[LayerReport]:
    """Render every layer of `spec` into `spec.out`; returns one report per layer.

    `stop()` is asked between steps chunks and batches; when it returns a signal number the run ends
    cleanly: the finished PNGs, the manifest and a palette of them stay, and `errors.Interrupted` is raised.
    """
    outputs.check_writable(spec.out)
    if spec.seed_image:
        _check_seed_source(spec.seed_image)
    loaded = load_model(spec)
    if loaded.preprocess is None:
        loaded = dataclasses.replace(loaded, preprocess=models.guess_preprocess(loaded))
    image_shape = (*(spec.size or loaded.size or (DEFAULT_SIZE, DEFAULT_SIZE)), loaded.channels)
    preprocess = models.preprocess_fn(loaded.preprocess, loaded.channels)
    plans = plan(spec, loaded, image_shape)
    memory = {p.layer: _memory_plan(spec, p, image_shape) for p in plans}  # SpecError before anything is written
    _check_stop(stop, "before anything was written")

    import tensorflow as tf

    tf.random.set_seed(spec.seed)
    return [_render_layer(spec, loaded, image_shape, p, settings(spec), preprocess, stop, memory[p.layer])
            for p in plans]


def settings(spec: RunSpec):
    """The optimizer settings of `spec`."""
    from . import optimize

    return optimize.Settings(spec.steps, spec.lr, spec.tv_weight, spec.lp_weight, spec.lp_norm,
                             spec.jitter, spec.seed, early_stop=spec.early_stop, transforms=spec.transforms,
                             objective=spec.objective, frames=spec.gif)


def renderer(spec: RunSpec, cut, preprocess, image_shape, batch: int):
    """The Renderer `filtervis run` uses for one layer at --lr (benchmarks/speed.py times this one)."""
    from . import optimize, params

    return optimize.Renderer(cut, preprocess, image_shape, batch, settings(spec),
                             params.resolve(spec.param, spec.decay, cut.output_shape, image_shape))


def _memory_plan(spec: RunSpec, plan_: Plan, image_shape):
    """The layer's memory.MemoryPlan when the batch is chosen automatically, else None."""
    from . import memory

    if spec.batch is not None:
        return None
    return memory.plan_memory(plan_.shapes, image_shape, max(1, len(plan_.filters)), spec.memory_budget)


ESTIMATE_MIN_SECONDS = 60.0  # a layer estimated to take longer gets a line on stderr, terminal or not


class _Progress:
    """Feeds the bar, and after the first chunk timed without tracing, estimates the layer's time: in
    the bar's description, and on stderr (with the batch and memory plan) when it is long."""

    def __init__(self, bar, layer: str, filters: int, steps: int, plan_text: str, quiet: bool):
        self.bar, self.layer, self.filters, self.steps = bar, layer, filters, steps
        self.plan_text, self.quiet = plan_text, quiet
        self.calls, self.last, self.done = 0, time.perf_counter(), 0

    def __call__(self, count: int) -> None:
        now = time.perf_counter()
        self.calls += 1
        self.done += count
        if self.calls == 2 and count:  # the first call includes tracing; the second is a clean chunk
            left = (self.filters * self.steps - self.done) * (now - self.last) / count
            text = f"~{left / 60:.0f} min" if left >= 90 else f"~{left:.0f} s"
            self.bar.set_description(f"{self.layer} ({self.filters} filters, {text})")
            if left >= ESTIMATE_MIN_SECONDS and not self.quiet:
                self.bar.write(f"filtervis: {self.layer}: {self.filters} filters x {self.steps} steps, "
                               f"{self.plan_text}: {text} left", file=sys.stderr)
        self.last = now
        self.bar.update(count)


class _Stop(Exception):
    """Raised inside a batch when `stop()` fired; never leaves this module."""


def _check_stop(stop, when: str) -> None:
    signal_number = stop() if stop else None
    if signal_number:
        raise Interrupted(f"interrupted by {_signal_name(signal_number)} {when}", signal_number)


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _render_layer(spec, loaded, image_shape, plan_, settings, preprocess, stop, memory=None) -> LayerReport:
    from tqdm import tqdm

    from . import optimize, params, rescue

    name = outputs.manifest_name(spec.shard)
    # Images do not depend on the batch (see exact.py), except, rarely, with TV and Lp both on; so
    # --resume keeps the batch the earlier run chose unless --batch is given.
    earlier = _earlier_batch(plan_.folder / name) if spec.resume and spec.batch is None else None
    batch = spec.batch or earlier or (memory.batch if memory else 1)
    batch = max(1, min(batch, len(plan_.filters)))
    manifest = _manifest(spec, loaded, image_shape, batch, plan_)
    param = params.resolve(spec.param, spec.decay, plan_.cut.output_shape, image_shape)
    manifest["params"]["param"] = param.name  # what auto chose
    rescuer = rescue.Rescuer(plan_.cut, preprocess, image_shape, settings, batch) if spec.rescue else None
    movies, labels = [], []  # --gif: each filter's frames (shrunk) for palette.gif
    plan_text = f"batch {batch}"
    if memory is not None:
        manifest["memory"] = {"budget": memory.budget, "planned_peak": memory.peak, "per_image": memory.per_image}
        plan_text += (f" (auto: memory budget {memory.budget / 2**30:.2f} GB, "
                      f"planned peak {memory.peak / 2**30:.2f} GB)")
    entries = _resumable(plan_, manifest, name) if spec.resume else {}
    todo = [f for f in plan_.filters if f not in entries]
    renderers = {}  # lr -> Renderer, built when first needed

    def render(chunk, lr, progress):
        if lr not in renderers:
            renderers[lr] = optimize.Renderer(plan_.cut, preprocess, image_shape, batch,
                                              dataclasses.replace(settings, lr=lr), param)
        seeds = [plan_.starts[f] for f in chunk] if plan_.starts else None
        return renderers[lr].render(chunk, seeds, progress=progress)

    bar = tqdm(total=len(plan_.filters) * spec.steps, initial=(len(plan_.filters) - len(todo)) * spec.steps,
               desc=f"{plan_.layer} ({len(plan_.filters)} filters)", unit="step",
               disable=spec.quiet or not sys.stderr.isatty(), file=sys.stderr, dynamic_ncols=True)

    estimate = _Progress(bar, plan_.layer, len(todo), spec.steps, plan_text, spec.quiet)

    def progress(count):
        estimate(count)
        if stop and stop():
            raise _Stop

    with bar:
        if not bar.disable:
            bar.write(f"filtervis: {plan_.layer}: {len(plan_.filters)} filters at "
                      f"{image_shape[1]}x{image_shape[0]} px, {plan_text}",
                      file=sys.stderr)
        try:
            for start in range(0, len(todo), batch):
                if stop and stop():
                    raise _Stop
                chunk = todo[start:start + batch]
                results = render(chunk, settings.lr, progress)
                faulty = [r.index for r in results if not r.finite]
                retried = {}
                for first in range(0, len(faulty), batch):
                    for result in render(faulty[first:first + batch], settings.lr * RETRY_LR_FACTOR, None):
                        retried[result.index] = result
                results = [retried.get(r.index, r) for r in results]
                rescued = set()
                if rescuer:
                    bar.total += rescuer.steps(sum(not r.converged for r in results))
                    results, rescued = rescuer.rescue(results, progress=progress)
                _save_batch(plan_.folder, results, set(retried), entries, manifest, name, rescued)
                if spec.gif:
                    for result in results:
                        if result.frames:
                            _write_gif(plan_.folder / _gif_name(outputs.filter_filename(result.index)), result.frames)
                            movies.append([images.shrink(frame) for frame in result.frames])
                            labels.append(str(result.index))
        except _Stop:
            _finish(spec, plan_, entries, manifest, name)
            done = sum(1 for f in plan_.filters if f in entries)
            raise Interrupted(f"interrupted by {_signal_name(stop())}: {done} of {len(plan_.filters)} filters "
                              f"of layer '{plan_.layer}' are finished and saved in {plan_.folder}", stop()) from None
    _finish(spec, plan_, entries, manifest, name)
    if movies:
        _write_gif(plan_.folder / _gif_name(outputs.PALETTE), images.palette_movie(movies, labels, spec.cols, plan_.layer))
    mine = [entries[f] for f in plan_.filters]
    dead = tuple(e["index"] for e in mine if e["status"] == STATUS_DEAD)
    failed = tuple(e["index"] for e in mine if not e["converged"] and e["status"] != STATUS_DEAD)
    faulty = tuple(e["index"] for e in mine if e["status"] == STATUS_FAILED)
    return LayerReport(plan_.layer, plan_.folder, len(mine), len(mine) - len(failed) - len(dead), failed, faulty, dead)


def _gif_name(png_name: str) -> str:
    return png_name[:-len(".png")] + ".gif"


def _write_gif(path: Path, frames) -> None:
    outputs.atomic_write(path, images.gif_bytes(list(frames)))


def _save_batch(folder: Path, results, retried: set, entries: dict, manifest: dict, name: str,
                rescued: set = frozenset()) -> None:
    """Write the PNGs of one batch, then the manifest listing them; on a write error remove this
    batch's PNGs again, so the folder holds exactly what the manifest on disk lists."""
    written = []
    try:
        for result in results:
            entry = dict(_filter_entry(result, retried=result.index in retried), rescued=result.index in rescued)
            if entry["status"] in WITH_PNG:
                path = folder / entry["file"]
                outputs.write_png(path, result.image)
                written.append(path)
            entries[result.index] = entry
        manifest["filters"] = [entries[f] for f in sorted(entries)]
    except BaseException:
        _undo(written, results, entries)
        raise
    try:
        report.save_manifest(folder, manifest, name)
    except BaseException:
        if not (folder / name).is_file() or outputs.read_manifest(folder / name)["filters"] != manifest["filters"]:
            _undo(written, results, entries)
        raise


def _undo(written: list[Path], results, entries: dict) -> None:
    """Forget a batch whose manifest could not be written: its PNGs go, so disk and manifest agree."""
    for path in written:
        path.unlink(missing_ok=True)
    for result in results:
        entries.pop(result.index, None)


def _finish(spec, plan_, entries: dict, manifest: dict, name: str) -> None:
    """Write the palette of the finished filters of this run's part, then the final manifest."""
    done = [entries[f] for f in plan_.filters if f in entries and entries[f]["status"] in WITH_PNG]
    palette = outputs.palette_name(spec.shard)
    if done:
        tiles = [outputs.read_png(plan_.folder / e["file"]) for e in done]
        title = plan_.layer if spec.shard is None else f"{plan_.layer} (part {spec.shard[0]}/{spec.shard[1]})"
        outputs.write_png(plan_.folder / palette, images.palette(tiles, [str(e["index"]) for e in done],
                                                                 spec.cols, title))
    manifest["palette"] = palette if done else None
    manifest["complete"] = all(f in entries for f in plan_.filters)
    manifest["filters"] = [entries[f] for f in sorted(entries)]
    report.save_manifest(plan_.folder, manifest, name)


def _earlier_batch(path: Path) -> int | None:
    """The batch size recorded in an earlier run's manifest, if there is one."""
    if not path.is_file():
        return None
    batch = outputs.read_manifest(path)["params"].get("batch")
    return batch if isinstance(batch, int) and batch >= 1 else None


def _resumable(plan_, manifest: dict, name: str) -> dict:
    """Entries of an earlier run in the same folder that this run can keep ({index: entry}).

    SpecError when that run's parameters differ from this one's (see UNCOMPARED_PARAMS).
    """
    path = plan_.folder / name
    if not path.is_file():
        return {}
    old = outputs.read_manifest(path)
    difference = compare_params(old, manifest)
    if difference:
        key, before, now = difference
        raise SpecError(f"--resume: {path} was made with {key}={before!r} (this run: {now!r}); rerun with the "
                        "same parameters, or drop --resume (or choose another --out) to start afresh")
    kept = {}
    for entry in old["filters"]:
        index, status = entry.get("index"), entry.get("status", STATUS_DONE)
        if status == STATUS_FAILED or (status in WITH_PNG and (plan_.folder / str(entry.get("file"))).is_file()):
            kept[int(index)] = dict(entry, status=status)
    return kept


def compare_params(old: dict, new: dict) -> tuple | None:
    """None when two manifests' results are interchangeable, else the first difference as
    (name, old value, new value). Compares the layer, the model file's digest and every parameter
    except UNCOMPARED_PARAMS."""
    pairs = [("layer", old.get("layer"), new.get("layer")),
             ("model file sha256", old.get("model", {}).get("sha256"), new.get("model", {}).get("sha256"))]
    keys = sorted((set(old["params"]) | set(new["params"])) - UNCOMPARED_PARAMS)
    pairs += [(f"--{key.replace('_', '-')}", old["params"].get(key), new["params"].get(key)) for key in keys]
    for key, before, now in pairs:
        if before != now:
            return key, before, now
    return None


def _filter_entry(result, retried: bool = False) -> dict:
    finite = bool(result.finite)
    entry = {
        "index": result.index,
        "status": STATUS_DEAD if finite and result.dead else STATUS_DONE if finite else STATUS_FAILED,
        "file": outputs.filter_filename(result.index) if finite else None,
        "steps": result.steps,
        "activation": round(result.activation, 6) if finite else None,
        "noise_activation": round(result.noise_activation, 6),
        "loss": round(result.loss, 6) if finite else None,
        "tv": round(result.tv, 6) if finite else None,
        "lp": round(result.lp, 6) if finite else None,
        "scale": round(result.scale, 6),
        "converged": bool(result.converged),
        "restarted": retried,
        "seconds": round(result.seconds, 3),
    }
    if entry["status"] == STATUS_DEAD:
        entry["peak_preactivation"] = round(result.peak, 6)
    return entry


def _manifest(spec: RunSpec, loaded, image_shape, batch: int, plan_: Plan) -> dict:
    import keras
    import PIL
    import tensorflow as tf

    params = dataclasses.asdict(spec)
    params.update(size=size_text(image_shape[:2]), batch=batch, layers=list(spec.layers),
                  shard=list(spec.shard) if spec.shard else None, preprocess=loaded.preprocess)
    for key in ("out", "quiet", "resume"):
        params.pop(key, None)
    model = {"name": loaded.name, "weights": loaded.weights, "preprocess": loaded.preprocess,
             "input_size": size_text(loaded.size) if loaded.size else None, "input": loaded.input_name,
             "channels": loaded.channels, "image": models.CHANNEL_NAMES[loaded.channels],
             "layer_kind": plan_.cut.kind, "classes": plan_.cut.classes}
    if Path(spec.model).is_file():
        model["sha256"] = outputs.file_digest(spec.model)
    return {
        "filtervis": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "layer": plan_.layer,
        "seed": spec.seed,
        "shard": f"{spec.shard[0]}/{spec.shard[1]}" if spec.shard else None,
        "model": model,
        "params": params,
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__},
        "planned": list(plan_.planned),
        "part": list(plan_.filters),
        "complete": False,
        "palette": None,
        "filters": [],
    }
