"""What a run leaves on disk, per layer under OUT/<layer>/: filter_NNNN.png, palette.png, manifest.json
(and the GIFs with --gif), and the one writer of them (`LayerWriter`) that `run`, `stitch` and
`Result.save` share: the manifest is made in one place (`new_manifest`), rewritten after each batch
and lists exactly the PNGs written (a batch whose manifest could not be written is taken back).
`DiskSink` is the run's sink: it checks the folders and what `--resume` may keep before anything is
written, and gives each layer its writer. Reading a run's folders back is views.py's; the bytes of
files and their names are files.py's.

Every file is written to a temporary name in the same folder, flushed to disk and renamed into place,
so a file on disk is always whole. A sharded run (`--shard K/N`) names its manifest and palette
`manifest.shard-K-of-N.json` and `palette.shard-K-of-N.png`, so the N parts can share one folder;
`filtervis stitch` merges them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import images, records
from .errors import SpecError
from .files import (MANIFEST, PALETTE, atomic_write, check_writable, file_digest, layer_dirname, manifest_name,
                    palette_name, read_manifest, read_png, write_manifest, write_png)
from .options import UNCOMPARED, size_text
from .records import STATUS_DEAD, STATUS_DONE, STATUS_FAILED, STATUS_UNWINNABLE, WITH_PNG


# --- the manifest ----------------------------------------------------------------------------------

UNWRITTEN_PARAMS = ("out", "quiet", "resume")  # options a manifest leaves out: where and how a run was shown
ALPHA_NOTE = ("the PNGs' last channel (RGBA, or LA for grey) is not part of the picture: it is the magnitude of "
              "the objective's gradient with respect to each pixel, summed over the channels and accumulated over "
              "the optimization steps, divided by its 99th percentile and clipped to [0, 1] (transparent: the "
              "pixel did not matter); activation is measured on the picture without it; the palette shows the "
              "tiles over a checkerboard")


def new_manifest(plan) -> dict:
    """A layer's manifest before any filter is finished, from its plan.LayerPlan. Its fields: the
    filtervis version, when it was created, the layer, the run's seed and shard (`K/N`), what the model
    is (`model`), every option (`params`, but UNWRITTEN_PARAMS; `seed_image` is the source of the start
    pictures, each filter's entry has its picture's `start_sha256`), the versions of the libraries, the
    filters the command asks for (`planned`) and this run's part of them (`part`), whether the part is
    finished (`complete`), the palette's file, the tile start (`tile`), one entry per finished filter
    (`filters`, see `entry`), the alpha note with --alpha, the memory plan with an automatic batch and
    what --filters asked for past a pattern's layer (`clipped`)."""
    import platform
    import time

    import keras
    import PIL
    import tensorflow as tf

    from . import __version__, models

    spec, loaded = plan.spec, plan.loaded
    params = {k: v for k, v in dataclasses.asdict(spec).items() if k not in UNWRITTEN_PARAMS}
    params.update(size=size_text(plan.image_shape[:2]), batch=plan.batch, layers=list(spec.layers),
                  shard=list(spec.shard) if spec.shard else None, preprocess=loaded.preprocess,
                  param=plan.param.name, precision=plan.compute_dtype)
    if plan.objectives:
        params.update(objective=[repr(o) for o in plan.objectives], filters="all")
    model = {"name": loaded.name, "weights": loaded.weights, "preprocess": loaded.preprocess,
             "input_size": size_text(loaded.size) if loaded.size else None, "input": loaded.input_name,
             "channels": loaded.channels, "image": models.CHANNEL_NAMES[loaded.channels],
             "layer_kind": "objectives" if plan.objectives else plan.cut.kind,
             "classes": False if plan.objectives else plan.cut.classes,
             "precision": plan.precision.manifest() if plan.precision is not None else None}
    if not plan.objectives:  # the model's overview (report.py) shows each layer's type and shape, in order
        model.update(layer_type=type(models.find_layer(loaded.model, plan.layer)[-1]).__name__,
                     layer_shape=[None, *plan.cut.output_shape], layer_order=len(plan.paths) - 1)
    if isinstance(spec.model, str) and Path(spec.model).is_file():
        model["sha256"] = file_digest(spec.model)
    manifest = {
        "filtervis": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "layer": plan.layer,
        "seed": params.get("seed"),
        "shard": f"{spec.shard[0]}/{spec.shard[1]}" if spec.shard else None,
        "model": model,
        "params": params,
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__},
        "planned": list(plan.filters),
        "part": list(plan.part),
        "complete": False,
        "palette": None,
        "tile": plan.tile_note(),
        "filters": [],
    }
    if params.get("alpha"):
        manifest["alpha"] = ALPHA_NOTE
    if plan.memory is not None:
        manifest["memory"] = {"budget": plan.memory.budget, "planned_peak": plan.memory.peak,
                              "per_image": plan.memory.per_image}
    if plan.clipped:
        manifest["clipped"] = plan.clipped
    return manifest


def finished(manifest: dict, entries: dict, part, palette: str | None) -> dict:
    """`manifest` with its filters (`entries` {filter: entry}, listed by index), its palette's file and
    whether every filter of `part` (this run's) is finished."""
    manifest.update(filters=[entries[f] for f in sorted(entries)], palette=palette,
                    complete=all(f in entries for f in part))
    return manifest


def entry(record, digests: dict | None = None) -> dict:
    """A records.FilterRecord as the manifest lists it, with its start picture's sha256 (`digests`:
    {filter: sha256} of a run from seed images)."""
    listed = record.entry()
    if digests:
        listed["start_sha256"] = digests[record.index]
    return listed


# --- the manifest's meaning --------------------------------------------------------------------------

OLDER_PARAMS = {"precision": "float32"}  # what a manifest written before a parameter existed ran with


def compare_params(old: dict, new: dict) -> tuple | None:
    """None when two manifests' results are interchangeable, else the first difference as
    (name, old value, new value). Compares the layer, the model file's digest and every parameter
    that changes the pictures (options.UNCOMPARED are those that do not)."""
    pairs = [("layer", old.get("layer"), new.get("layer")),
             ("model file sha256", old.get("model", {}).get("sha256"), new.get("model", {}).get("sha256"))]
    keys = sorted((set(old["params"]) | set(new["params"])) - UNCOMPARED)
    pairs += [(f"--{key.replace('_', '-')}", old["params"].get(key, OLDER_PARAMS.get(key)),
               new["params"].get(key, OLDER_PARAMS.get(key))) for key in keys]
    for key, before, now in pairs:
        if before != now:
            return key, before, now
    return None


def palette_cols(diversity: int, cols: int) -> int:
    """Palette columns: `cols`, or one row per filter (its `diversity` pictures) with --diversity."""
    return diversity if diversity > 1 else cols


def write_pictures(folder: Path, pictures) -> list[Path]:
    """Write each picture's PNG (and GIF, when it has frames): `pictures` are (file name, image uint8
    [H, W, C], frames) triples. Returns the paths written."""
    written = []
    for name, image, frames in pictures:
        path = Path(folder) / name
        write_png(path, image)
        written.append(path)
        if frames:
            gif = path.with_suffix(".gif")
            atomic_write(gif, images.gif_bytes(list(frames)))
            written.append(gif)
    return written


def has_png(folder: Path, entry: dict) -> bool:
    """Whether a manifest entry has a picture to show: its PNG, or one of its --diversity pictures'."""
    if entry.get("variants"):
        return any(v.get("file") and (folder / v["file"]).is_file() for v in entry["variants"])
    return entry.get("status", STATUS_DONE) in WITH_PNG


def folder_tiles(folder: Path, entries, alpha: bool) -> list[tuple]:
    """The (index, pictures) pairs of records.palette_tiles for manifest `entries` whose PNGs are in
    `folder` (a picture not on disk is None)."""
    def picture(p):
        present = p.get("file") and (folder / p["file"]).is_file()
        return p.get("variant"), read_png(folder / p["file"], alpha=alpha) if present else None

    return [(entry["index"], [picture(p) for p in entry.get("variants") or [entry]]) for entry in entries]


def write_palette(folder: Path, name: str, entries, title: str, params: dict, cols: int | None = None) -> str | None:
    """Write the labeled palette of the `entries` that have a picture in `folder`, with the run's
    `params` (its manifest's: cols, diversity, alpha) or `cols`; returns its file name, or None when no
    entry has a picture (nothing is written)."""
    folder = Path(folder)
    shown = [e for e in entries if has_png(folder, e)]
    if not shown:
        return None
    alpha = bool(params.get("alpha"))
    tiles, labels = records.palette_tiles(folder_tiles(folder, shown, alpha))
    columns = palette_cols(int(params.get("diversity") or 1), cols or int(params.get("cols") or 8))
    write_png(folder / name, images.palette(tiles, labels, columns, title, checker=alpha))
    return name


def write_palette_gif(folder: Path, layer: str, movies, cols: int) -> None:
    """palette.gif: the `movies` ((label, frames) pairs) shrunk and side by side; nothing without movies."""
    if movies:
        frames = images.palette_movie([[images.shrink(f) for f in frames] for _, frames in movies],
                                      [label for label, _ in movies], cols, layer)
        atomic_write(Path(folder) / (PALETTE[:-len(".png")] + ".gif"), images.gif_bytes(list(frames)))


# --- the one writer of a layer folder ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerReport:
    """What one layer's rendering gave."""

    layer: str
    folder: Path
    filters: int
    converged: int
    failed: tuple[int, ...]  # did not converge (includes `faulty`, not `dead` nor `unwinnable`)
    faulty: tuple[int, ...] = ()  # NaN/Inf even after a restart with a smaller step: no PNG
    dead: tuple[int, ...] = ()  # channels nothing fired (see rescue.py): not counted as failures
    unwinnable: tuple[int, ...] = ()  # classes no picture was put in (see rescue.py): not counted as failures


class LayerWriter:
    """Writes one layer folder: pictures batch by batch (`add`, or `copy` from another folder), then
    the palette and the final manifest (`finish`). `manifest` is the layer's (see new_manifest), saved
    as `name`; `entries` {filter: entry} what it lists; `saved()` is called after each manifest written
    (the run's page)."""

    def __init__(self, folder: Path, manifest: dict, name: str = MANIFEST, entries: dict | None = None,
                 digests: dict | None = None, saved=None):
        self.folder, self.manifest, self.name = Path(folder), manifest, name
        self.entries = dict(entries or {})
        self.digests, self.saved = digests, saved
        self.movies = []  # (label, frames) of the pictures written with frames (--gif)

    def add(self, batch) -> None:
        """Write the pictures of a batch of records.FilterRecords, then the manifest listing them; on a
        write error remove this batch's files again, so the folder holds what the manifest on disk lists."""
        written = []
        try:
            for rec in batch:
                written += write_pictures(self.folder, records.pictures([rec]))
                self.entries[rec.index] = entry(rec, self.digests)
            self.manifest["filters"] = self._listed()
        except BaseException:
            self._undo(written, [rec.index for rec in batch])
            raise
        try:
            self._save()
        except BaseException:
            path = self.folder / self.name
            if not path.is_file() or read_manifest(path)["filters"] != self.manifest["filters"]:
                self._undo(written, [rec.index for rec in batch])
            raise
        self.movies += records.movies(batch)

    def copy(self, found: dict) -> None:
        """Take the pictures of another run's entries: `found` {filter: (entry, its folder)}."""
        for listed, folder in found.values():
            for name in [v["file"] for v in listed.get("variants") or [] if v.get("file")] or [listed["file"]]:
                source, target = Path(folder) / name, self.folder / name
                if source.is_file() and source.resolve() != target.resolve():
                    atomic_write(target, source.read_bytes())
            self.entries[int(listed["index"])] = listed

    def finish(self, part, title: str, cols: int | None = None, palette: str = PALETTE, movie: bool = True) -> None:
        """The palette of the finished filters of `part` (this run's), the final manifest (`complete`
        when every filter of `part` is finished) and, with `movie`, palette.gif of the pictures' frames."""
        params = self.manifest["params"]
        done = [self.entries[f] for f in part if f in self.entries]
        finished(self.manifest, self.entries, part, write_palette(self.folder, palette, done, title, params, cols))
        self._save()
        if movie:
            write_palette_gif(self.folder, self.manifest["layer"], self.movies, cols or int(params.get("cols") or 8))

    def report(self, part) -> LayerReport:
        """The LayerReport of the filters of `part`."""
        mine = [self.entries[f] for f in part if f in self.entries]
        apart = (STATUS_DEAD, STATUS_UNWINNABLE)  # counted apart, not as failures
        dead, unwinnable = (tuple(e["index"] for e in mine if e["status"] == s) for s in apart)
        failed = tuple(e["index"] for e in mine if not e["converged"] and e["status"] not in apart)
        faulty = tuple(e["index"] for e in mine if e["status"] == STATUS_FAILED)
        converged = len(mine) - len(failed) - len(dead) - len(unwinnable)
        return LayerReport(self.manifest["layer"], self.folder, len(mine), converged, failed, faulty, dead,
                           unwinnable)

    def _listed(self) -> list:
        return [self.entries[f] for f in sorted(self.entries)]

    def _save(self) -> None:
        write_manifest(self.folder, self.manifest, self.name)
        if self.saved:
            self.saved()

    def _undo(self, written: list[Path], indices) -> None:
        """Forget a batch whose manifest could not be written: its files go, so disk and manifest agree."""
        for path in written:
            path.unlink(missing_ok=True)
        for index in indices:
            self.entries.pop(index, None)


class DiskSink:
    """A run's sink on disk: OUT/<layer>/ per layer (see the module doc). `saved()` is called after
    each manifest written (the run's page, OUT/index.html)."""

    def __init__(self, out, shard: tuple[int, int] | None = None, resume: bool = False, saved=None):
        self.out, self.shard, self.resume, self.saved = Path(out), shard, resume, saved

    def check(self) -> None:
        """OutputError unless OUT can be written (before the model is loaded)."""
        check_writable(self.out)

    def earlier_batch(self, layer: str) -> int | None:
        """With --resume, the batch size an earlier run into the layer's folder chose."""
        path = self.out / layer_dirname(layer) / manifest_name(self.shard)
        if not self.resume or not path.is_file():
            return None
        batch = read_manifest(path)["params"].get("batch")
        return batch if isinstance(batch, int) and batch >= 1 else None

    def open(self, plans) -> list[LayerWriter]:
        """A LayerWriter per plan, holding what --resume keeps; SpecError when two layers would share a
        folder or an earlier run differs (see `resumable`). Nothing is written."""
        folders = {}
        for plan in plans:
            folder = self.out / layer_dirname(plan.layer)
            if folder in folders:
                raise SpecError(f"layers '{folders[folder]}' and '{plan.layer}' would share the folder {folder}; "
                                "visualize them in separate runs with different --out")
            folders[folder] = plan.layer
        writers = []
        for plan, folder in zip(plans, folders):
            manifest = new_manifest(plan)
            kept = resumable(folder / manifest_name(self.shard), manifest, plan.start_digests) if self.resume else {}
            writers.append(LayerWriter(folder, manifest, manifest_name(self.shard), kept, plan.start_digests,
                                       self.saved))
        return writers

    def close(self, writer: LayerWriter, plan, complete: bool):
        """Finish a layer (also when the run was stopped: then without palette.gif); its LayerReport."""
        title = plan.layer if self.shard is None else f"{plan.layer} (part {self.shard[0]}/{self.shard[1]})"
        writer.finish(plan.part, title, palette=palette_name(self.shard), movie=complete)
        return writer.report(plan.part)

    def where(self, writer: LayerWriter) -> str:
        return f" and saved in {writer.folder}"


def resumable(path: Path, manifest: dict, digests: dict | None) -> dict:
    """Entries of the earlier run whose manifest is `path` that a run of `manifest` can keep ({index:
    entry}): those whose picture is on disk, or that failed. SpecError when that run's parameters
    differ from this one's (see compare_params), or a kept filter started from another picture."""
    if not path.is_file():
        return {}
    old = read_manifest(path)
    difference = compare_params(old, manifest)
    if difference:
        key, before, now = difference
        raise SpecError(f"--resume: {path} was made with {key}={before!r} (this run: {now!r}); rerun with the "
                        "same parameters, or drop --resume (or choose another --out) to start afresh")
    kept = {}
    for listed in old["filters"]:
        index, status = listed.get("index"), listed.get("status", STATUS_DONE)
        if status == STATUS_FAILED or (status in WITH_PNG and (path.parent / str(listed.get("file"))).is_file()):
            kept[int(index)] = dict(listed, status=status)
    for index, listed in kept.items():
        before, now = listed.get("start_sha256"), (digests or {}).get(index)
        if before != now:
            raise SpecError(f"--resume: {path} was made with another start picture for filter {index} "
                            f"(--seed-image sha256 {str(before)[:12]}, this run: {str(now)[:12]}); rerun with "
                            "the same --seed-image, or drop --resume (or choose another --out) to start afresh")
    return kept
