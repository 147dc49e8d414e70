"""`filtervis diff OLD NEW`: how far each filter's picture moved between two runs of the same layers
and filters (two checkpoints, a training change), and how its activation changed.

Runs are read as the page reads them (views.read_views: every manifest of each layer folder) and are
compared only when they hold the same layers, the same filters and the same image size and channels.
NEW/diff.html ranks each layer's filters by distance, most changed first, OLD and NEW side by side:
NEW's images are referenced relatively, OLD's are embedded (data: URLs), so NEW's folder stays whole
when uploaded on its own.

Distances (`--metric`), between the two 8-bit PNGs:
- pixel (default): the root mean square of their difference, pixels scaled to [0, 1], over every pixel
  and channel. 0: the same image; 1: black against white everywhere; two unrelated uniform-noise
  images give about 0.41. It sees a pattern shifted by a few pixels as a large change.
- perceptual: both images go through the early layers of NEW's own model (the first PERCEPTUAL_LAYERS
  convolutions it lists, after its preprocessing); at each position the feature vector is divided by
  its length, and the distance is the mean over positions and layers of the squared difference of those
  unit vectors (0: the same features everywhere; at most 4). The model is loaded again from what NEW's
  manifest records (name, weights, preprocessing) in safe mode; when that is impossible (offline
  weights, an in-memory model, a moved file) the command stops and says to use --metric pixel.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
import statistics
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from . import __version__, files
from .options import DEFAULT_METRIC, METRICS
from .errors import FiltervisError, OutputError, SpecError
from .records import filter_status
from .views import LayerView, read_views

DIFF = "diff.html"
PERCEPTUAL_LAYERS = 3
_EPS = 1e-10


@dataclasses.dataclass(frozen=True)
class FilterChange:
    """One filter in both runs. `distance` is None when either run has no image of it (NaN/Inf)."""

    index: int
    distance: float | None
    old_activation: float | None
    new_activation: float | None
    old_status: str
    new_status: str
    old_file: Path | None
    new_file: Path | None

    @property
    def activation_change(self) -> float | None:
        if self.old_activation is None or self.new_activation is None:
            return None
        return round(self.new_activation - self.old_activation, 6)


@dataclasses.dataclass(frozen=True)
class LayerDiff:
    layer: str
    old: LayerView
    new: LayerView
    changes: tuple[FilterChange, ...]  # most changed first; filters without a distance last


def compare(old: str | Path, new: str | Path, metric: str = DEFAULT_METRIC) -> list[LayerDiff]:
    """Compare the runs in folders `old` and `new` (a run's --out, or one layer folder each).

    SpecError, before anything is computed, when their layers, filters, image sizes or channels differ
    or the metric is unknown; OutputError when a folder holds no run."""
    if metric not in METRICS:
        raise SpecError(f"--metric must be one of {', '.join(METRICS)}, but was {metric!r}")
    old_views, new_views = _views(old, "OLD"), _views(new, "NEW")
    old_by = {v.layer: v for v in old_views}
    new_by = {v.layer: v for v in new_views}
    if set(old_by) != set(new_by):
        raise SpecError(f"cannot diff {old} (layers {', '.join(sorted(old_by))}) with {new} (layers "
                        f"{', '.join(sorted(new_by))}); diff two runs of the same --layer")
    for layer, view in new_by.items():
        _check_same(old_by[layer], view)
    distance = _pixel_distances if metric == "pixel" else _perceptual_distances(new_views[0])
    return [_layer_diff(old_by[v.layer], v, distance) for v in new_views]


def _views(root, which: str) -> list[LayerView]:
    root = Path(root)
    if not root.is_dir():
        raise OutputError(f"{which} {root} is not a folder; give the --out folder of a filtervis run")
    views = read_views(root)
    if not views:
        raise OutputError(f"{which} {root} holds no manifest; give the --out folder of a filtervis run")
    return views


def _check_same(old: LayerView, new: LayerView) -> None:
    """SpecError unless both views list the same filters at the same size and channels."""
    old_filters = [int(e["index"]) for e in old.entries]
    new_filters = [int(e["index"]) for e in new.entries]
    if old_filters != new_filters:
        only_old = sorted(set(old_filters) - set(new_filters))
        only_new = sorted(set(new_filters) - set(old_filters))
        what = "; ".join(text for text in (f"only OLD has {_few(only_old)}" if only_old else "",
                                           f"only NEW has {_few(only_new)}" if only_new else "") if text)
        raise SpecError(f"cannot diff layer '{new.layer}': its filters differ ({what}); diff two runs of the "
                        "same --filters, finished (or stitched) both")
    pairs = [("size", old.manifest["params"].get("size"), new.manifest["params"].get("size")),
             ("channels", old.manifest.get("model", {}).get("channels"), new.manifest.get("model", {}).get("channels"))]
    for key, before, now in pairs:
        if before != now:
            fix = "--size" if key == "size" else "a model with as many input channels"
            raise SpecError(f"cannot diff layer '{new.layer}': OLD has {key} {before} and NEW has {key} {now}; "
                            f"diff two runs of the same {fix}")


def _few(indices) -> str:
    return "filter" + ("s " if len(indices) > 1 else " ") + ", ".join(map(str, indices[:10])) + (
        " ..." if len(indices) > 10 else "")


def _layer_diff(old: LayerView, new: LayerView, distance) -> LayerDiff:
    pairs = []
    for before, after in zip(old.entries, new.entries):
        paths = [view.folder / e["file"] if e.get("file") else None for view, e in ((old, before), (new, after))]
        pairs.append((before, after, *paths))
    both = [(o, n) for _, _, o, n in pairs if o is not None and n is not None]
    if both:
        shapes = {files.read_png(p).shape for pair in both for p in pair}
        if len(shapes) > 1:
            raise SpecError(f"cannot diff layer '{new.layer}': its images have different sizes "
                            f"({', '.join(map(str, sorted(shapes)))}); diff two runs of the same --size")
    measured = iter(distance(both) if both else [])
    changes = [FilterChange(int(after["index"]),
                            next(measured) if o is not None and n is not None else None,
                            before.get("activation"), after.get("activation"),
                            filter_status(before), filter_status(after), o, n)
               for before, after, o, n in pairs]
    changes.sort(key=lambda c: (c.distance is None, -(c.distance or 0.0), c.index))
    return LayerDiff(new.layer, old, new, tuple(changes))


def _pixel_distances(pairs) -> list[float]:
    """Root mean square difference, pixels in [0, 1], of each (old PNG, new PNG) pair."""
    distances = []
    for old, new in pairs:
        a = files.read_png(old).astype(np.float64) / 255.0
        b = files.read_png(new).astype(np.float64) / 255.0
        distances.append(round(float(np.sqrt(np.mean((a - b) ** 2))), 6))
    return distances


def _perceptual_distances(view: LayerView):
    """A distance function on (old PNG, new PNG) pairs that uses the early layers of `view`'s model."""
    from . import models
    from .options import parse_size

    record = view.manifest.get("model", {})
    params = view.manifest.get("params", {})
    name, preprocess = record.get("name"), record.get("preprocess")
    weights = params.get("weights", record.get("weights"))  # the --weights given (the record says "own" for a file's)
    try:
        loaded = models.load(str(name), str(weights), preprocess, parse_size(params.get("size")),
                             unsafe=False, input_name=record.get("input"))
        rows = [r for r in models.list_layers(loaded) if r.kind == "channels" and len(r.shape) == 4]
        convs = [r for r in rows if "Conv" in r.type] or rows
        if not convs:
            raise SpecError("it has no layer with channel maps")
        shapes = models.layer_shapes(loaded)
        cuts = [models.cut(loaded, r.path, shapes) for r in convs[:PERCEPTUAL_LAYERS]]
        prepare = models.preprocess_fn(preprocess or models.guess_preprocess(loaded), loaded.channels)
    except FiltervisError as exc:
        raise SpecError(f"--metric perceptual needs NEW's model ({name}, weights {weights}) and could not load "
                        f"it: {' '.join(str(exc).split())[:200]}; use --metric pixel") from None

    def features(paths) -> list[np.ndarray]:
        import tensorflow as tf

        batch = tf.constant(np.stack([files.read_png(p) for p in paths]).astype(np.float32) / 255.0)
        x = prepare(batch)
        found = []
        for layer in cuts:
            f = layer.activation(layer.forward(x)).numpy().astype(np.float64)
            found.append(f / (np.linalg.norm(f, axis=-1, keepdims=True) + _EPS))
        return found

    def distances(pairs) -> list[float]:
        result = []
        for start in range(0, len(pairs), 16):
            chunk = pairs[start:start + 16]
            old, new = features([o for o, _ in chunk]), features([n for _, n in chunk])
            per_layer = [np.mean(np.sum((a - b) ** 2, axis=-1), axis=(1, 2)) for a, b in zip(old, new)]
            result += [round(float(d), 6) for d in np.mean(per_layer, axis=0)]
        return result

    return distances


# --- outputs --------------------------------------------------------------------------------------

def summary(old, new, diffs: list[LayerDiff], metric: str, page: Path | None) -> dict:
    """The --json document: per layer, every filter, most changed first."""
    return {"filtervis": __version__, "old": str(old), "new": str(new), "metric": metric,
            "html": str(page) if page else None,
            "layers": [{"layer": d.layer, "filters": len(d.changes),
                        "median_distance": _median(d),
                        "changes": [{"index": c.index, "distance": c.distance, "old_activation": c.old_activation,
                                     "new_activation": c.new_activation, "activation_change": c.activation_change,
                                     "old_status": c.old_status, "new_status": c.new_status}
                                    for c in d.changes]}
                       for d in diffs]}


def _median(d: LayerDiff) -> float | None:
    values = [c.distance for c in d.changes if c.distance is not None]
    return round(statistics.median(values), 6) if values else None


def write_diff(old, new, diffs: list[LayerDiff], metric: str) -> Path:
    """Write NEW/diff.html atomically; returns its path."""
    new = Path(new)
    path = new / DIFF
    files.atomic_write(path, render_diff(Path(old), new, diffs, metric).encode())
    return path


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#1d2125;background:#fafafa}
h1{font-size:1.5em;margin:.8em 0 .2em}h2{font-size:1.2em;margin:1.2em 0 .3em}.meta{color:#555;margin:.2em 0}
table{border-collapse:collapse;background:#fff}td,th{padding:.3em .6em;border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:middle}
td.n,th.n{text-align:right}
td img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;display:block;background:#eee}
.bar{height:8px;background:#1565c0;border-radius:2px}
.changed{color:#c62828;font-weight:600}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_diff(old: Path, new: Path, diffs: list[LayerDiff], metric: str) -> str:
    """The whole diff.html (NEW's images relative to NEW, OLD's embedded)."""
    sections = "".join(_diff_section(d, new) for d in diffs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>filtervis diff: {_e(old.resolve().name)} -> {_e(new.resolve().name)}</title>
<style>{CSS}</style></head>
<body>
<h1>filtervis diff</h1>
<p class="meta">OLD {_e(old)} &rarr; NEW {_e(new)}; metric {_e(metric)} ({_e(_METRIC_TEXT[metric])});
written {_e(time.strftime('%Y-%m-%d %H:%M:%S %z'))} by filtervis {_e(__version__)}.
Filters are ranked by distance, most changed first.</p>
{sections}
</body></html>
"""


_METRIC_TEXT = {
    "pixel": "root mean square pixel difference, pixels in [0, 1]",
    "perceptual": "squared difference of unit feature vectors of NEW's model's early layers",
}


def _diff_section(d: LayerDiff, new: Path) -> str:
    largest = max([c.distance for c in d.changes if c.distance is not None] or [0.0]) or 1.0
    rows = []
    for rank, c in enumerate(d.changes, 1):
        old_img = f'<img src="{_data_url(c.old_file)}" alt="OLD filter {c.index}">' if c.old_file else "no image"
        new_src = quote(Path(os.path.relpath(c.new_file, new)).as_posix()) if c.new_file else None
        new_img = f'<img src="{new_src}" alt="NEW filter {c.index}">' if new_src else "no image"
        width = 0 if c.distance is None else round(100 * c.distance / largest)
        status = (f'<span class="changed">{_e(c.old_status)} &rarr; {_e(c.new_status)}</span>'
                  if c.old_status != c.new_status else _e(c.new_status))
        rows.append(f'<tr class="change" data-index="{c.index}" data-distance="{_e(c.distance)}"><td class="n">{rank}</td>'
                    f'<td class="n">#{c.index}</td><td>{old_img}</td><td>{new_img}</td>'
                    f'<td class="n">{_number(c.distance)}<div class="bar" style="width:{width}%"></div></td>'
                    f'<td class="n">{_number(c.old_activation)} &rarr; {_number(c.new_activation)}'
                    f' ({"+" if (c.activation_change or 0) >= 0 else ""}{_number(c.activation_change)})</td>'
                    f'<td>{status}</td></tr>')
    return f"""
<section class="layer" data-layer="{_e(d.layer)}">
<h2>{_e(d.layer)}</h2>
<p class="meta">{len(d.changes)} filters; median distance {_number(_median(d))};
OLD model {_e(d.old.manifest.get('model', {}).get('name'))}, NEW model {_e(d.new.manifest.get('model', {}).get('name'))}</p>
<table><tr><th class="n">rank</th><th class="n">filter</th><th>OLD</th><th>NEW</th><th class="n">distance</th>
<th class="n">activation OLD &rarr; NEW (change)</th><th>status</th></tr>
{''.join(rows)}</table>
</section>"""
