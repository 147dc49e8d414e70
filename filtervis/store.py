"""What a run leaves on disk, per layer under OUT/<layer>/: filter_NNNN.png, palette.png, manifest.json;
and the manifest's meaning: the filters' statuses, when two runs' manifests are interchangeable, and
a layer folder's manifests merged into one view (`LayerView`). The one writer of pictures, palettes
and manifests that `run`, `stitch` and `Result.save` share. It never calls the views (report, diff).

Every file is written to a temporary name in the same folder, flushed to disk and renamed into place,
so a file on disk is always whole. The manifest is rewritten after each batch and lists exactly the
PNGs written. A sharded run (`--shard K/N`) names its manifest and palette `manifest.shard-K-of-N.json`
and `palette.shard-K-of-N.png`, so the N parts can share one folder; `filtervis stitch` merges them.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from . import images
from .errors import OutputError
from .options import UNCOMPARED

MANIFEST = "manifest.json"
STATUS_DONE, STATUS_FAILED = "done", "failed"  # failed: NaN/Inf even after the restart; no PNG
STATUS_DEAD = "dead"  # a channel nothing the rescue tried fired (see rescue.py); it has a PNG all the same
STATUS_UNWINNABLE = "unwinnable"  # a class no image the rescue tried put first (see rescue.py); it has a PNG
WITH_PNG = (STATUS_DONE, STATUS_DEAD, STATUS_UNWINNABLE)
# what a reader is told of a filter (filter_status)
STATUSES = ("converged", "rescued", STATUS_DEAD, STATUS_UNWINNABLE, "failed")
UNCONVERGED = (STATUS_DEAD, STATUS_UNWINNABLE, "failed")
PALETTE = "palette.png"
MAX_DIRNAME = 100  # characters of a layer folder name; longer names are cut and get a hash suffix
_SHARD_FILE = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.json$")


def filter_filename(index: int, variant: int | None = None) -> str:
    """`filter_0007.png`, or `filter_0007_2.png` for picture 2 of filter 7 (--diversity)."""
    return f"filter_{index:04d}.png" if variant is None else f"filter_{index:04d}_{variant}.png"


def manifest_name(shard: tuple[int, int] | None = None) -> str:
    """`manifest.json`, or `manifest.shard-K-of-N.json` for shard (K, N)."""
    return MANIFEST if shard is None else f"manifest.shard-{shard[0]}-of-{shard[1]}.json"


def palette_name(shard: tuple[int, int] | None = None) -> str:
    """`palette.png`, or `palette.shard-K-of-N.png` for shard (K, N)."""
    return PALETTE if shard is None else f"palette.shard-{shard[0]}-of-{shard[1]}.png"


def manifest_files(folder: Path) -> list[Path]:
    """The manifests in a layer folder: manifest.json first, then shard manifests by K."""
    folder = Path(folder)
    shards = sorted((p for p in folder.glob("manifest.shard-*.json") if _SHARD_FILE.match(p.name)),
                    key=lambda p: tuple(int(g) for g in _SHARD_FILE.match(p.name).groups()[::-1]))
    main = folder / MANIFEST
    return ([main] if main.is_file() else []) + shards


def layer_dirname(path: str) -> str:
    """A safe folder name for a layer path: `outer/inner` -> `outer__inner`.

    Only letters, digits, `.`, `_` and `-` survive; never `.`, `..` or a path, and at
    most MAX_DIRNAME characters (a longer name is cut and gets a hash of the whole name), so the
    folder always lands directly inside --out.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.replace("/", "__"))
    if not name.strip("."):
        name = "layer_" + name.replace(".", "_")
    if len(name) > MAX_DIRNAME:
        name = name[:MAX_DIRNAME - 9] + "_" + hashlib.sha256(path.encode()).hexdigest()[:8]
    return name


def check_writable(out: str | Path) -> None:
    """Raise OutputError unless `out` is (or can be made) a writable folder. Writes nothing that stays."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder; give a folder path")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"--out {out}: {probe} is a file, not a folder; give a folder path")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write in {probe} ({exc.strerror}); choose a writable folder") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left on the device writing {path}; free some space (or choose another "
                           "--out) and rerun with --resume to keep what is finished")
    return OutputError(f"cannot write {path} ({exc.strerror or exc}); choose a writable --out")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync and a rename.

    On any failure the temporary file is removed and `path` keeps its old content (or stays absent);
    an OSError becomes an OutputError saying what to do.
    """
    path = Path(path)
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(handle, 0o666 & ~_umask())  # an ordinary new file's permissions, not mkstemp's 0600
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except OSError as exc:
        if temp:
            Path(temp).unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        if temp:
            Path(temp).unlink(missing_ok=True)
        raise


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of a uint8 [H, W, C] image, C 1 -> 8-bit L, 3 -> RGB, 4 -> RGBA (deterministic: same pixels,
    same bytes). ValueError for any other shape or dtype."""
    buffer = io.BytesIO()
    images.to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: Path, image: np.ndarray) -> None:
    """`png_bytes(image)` written atomically to `path` (see `atomic_write`)."""
    atomic_write(path, png_bytes(image))


def read_png(path: Path, alpha: bool = False) -> np.ndarray:
    """A PNG as uint8 [H, W, C] keeping its channels: L -> C = 1, RGB -> 3, RGBA -> 4, and with `alpha`
    (a run's --alpha PNGs) LA -> 2; any other mode (palette, grey with alpha, 16-bit, ...) is converted
    to RGB."""
    with Image.open(path) as image:
        if image.mode not in (images.TILE_MODES if alpha else images.MODES).values():
            image = image.convert("RGB")
        return images.from_pil(image)


def write_manifest(folder: Path, manifest: dict, name: str = MANIFEST) -> None:
    atomic_write(Path(folder) / name, (json.dumps(manifest, indent=2) + "\n").encode())


def read_manifest(path: Path) -> dict:
    """A manifest as a dict; OutputError when it is not one filtervis wrote."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"{path} is not a readable manifest ({type(exc).__name__}); delete it and "
                          "rerun without --resume") from None
    if not isinstance(data, dict) or not isinstance(data.get("filters"), list) or "params" not in data:
        raise OutputError(f"{path} is not a filtervis manifest; delete it and rerun without --resume")
    return data


def file_digest(path: str | Path) -> str | None:
    """sha256 hex digest of a file, None when `path` is not a file."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the manifest ----------------------------------------------------------------------------------

UNWRITTEN_PARAMS = ("out", "quiet", "resume")  # options a manifest leaves out: where and how a run was shown
ALPHA_NOTE = ("the PNGs' last channel (RGBA, or LA for grey) is not part of the picture: it is the magnitude of "
              "the objective's gradient with respect to each pixel, summed over the channels and accumulated over "
              "the optimization steps, divided by its 99th percentile and clipped to [0, 1] (transparent: the "
              "pixel did not matter); activation is measured on the picture without it; the palette shows the "
              "tiles over a checkerboard")


def new_manifest(layer: str, model: dict, params: dict, planned: list, part: list, tile: dict | None,
                 memory=None) -> dict:
    """A layer's manifest before any filter is finished. Its fields: the filtervis version, when it was
    created, the layer, the run's seed and shard (`K/N`), what the model is (`model`), every option
    (`params`, but UNWRITTEN_PARAMS), the versions of the libraries, the filters the command asks for
    (`planned`) and this run's part of them (`part`), whether the part is finished (`complete`), the
    palette's file, the tile start (`tile`), one entry per finished filter (`filters`, see
    records.FilterRecord.entry), the alpha note with --alpha and the memory plan with an automatic batch."""
    import platform
    import time

    import keras
    import PIL
    import tensorflow as tf

    from . import __version__

    params = {k: v for k, v in params.items() if k not in UNWRITTEN_PARAMS}
    shard = params.get("shard")
    manifest = {
        "filtervis": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "layer": layer,
        "seed": params.get("seed"),
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "model": model,
        "params": params,
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__},
        "planned": planned,
        "part": part,
        "complete": False,
        "palette": None,
        "tile": tile,
        "filters": [],
    }
    if params.get("alpha"):
        manifest["alpha"] = ALPHA_NOTE
    if memory is not None:
        manifest["memory"] = {"budget": memory.budget, "planned_peak": memory.peak, "per_image": memory.per_image}
    return manifest


# --- the manifest's meaning --------------------------------------------------------------------------

def filter_status(entry: dict) -> str:
    """What a manifest entry tells a reader: converged (on the first try), rescued (converged in the
    rescue), dead (a channel nothing fired), unwinnable (a class no picture put first) or failed (did not
    converge, or NaN/Inf)."""
    status = entry.get("status", STATUS_DONE)
    if status in (STATUS_DEAD, STATUS_UNWINNABLE):
        return status
    if status != STATUS_DONE or not entry.get("converged"):
        return "failed"
    return "rescued" if entry.get("rescued") else "converged"


def has_png(folder: Path, entry: dict) -> bool:
    """Whether a manifest entry has a picture to show: its PNG, or one of its --diversity pictures'."""
    if entry.get("variants"):
        return any(v.get("file") and (folder / v["file"]).is_file() for v in entry["variants"])
    return entry.get("status", STATUS_DONE) in WITH_PNG


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


def entry_tiles(folder: Path, entries, alpha: bool) -> tuple[list, list]:
    """(tiles, labels) of the palette of manifest `entries` whose PNGs are in `folder`: one tile per
    picture, labeled with the filter index (`7`, or `7_2` for picture 2 of a --diversity run); a missing
    picture of a filter with others is a black tile, so that every filter keeps its row."""
    tiles, labels = [], []
    for entry in entries:
        pictures = entry.get("variants") or [entry]
        present = [p for p in pictures if p.get("file") and (folder / p["file"]).is_file()]
        shape = read_png(folder / present[0]["file"], alpha=alpha).shape
        for p in pictures:
            has = p.get("file") and (folder / p["file"]).is_file()
            tiles.append(read_png(folder / p["file"], alpha=alpha) if has else np.zeros(shape, np.uint8))
            labels.append(str(entry["index"]) if p.get("variant") is None else f"{entry['index']}_{p['variant']}")
    return tiles, labels


def write_palette(folder: Path, name: str, entries, title: str, params: dict, cols: int | None = None) -> str | None:
    """Write the labeled palette of the `entries` that have a picture in `folder` (see entry_tiles), with
    the run's `params` (its manifest's: cols, diversity, alpha) or `cols`; returns its file name, or None
    when no entry has a picture (nothing is written)."""
    folder = Path(folder)
    shown = [e for e in entries if has_png(folder, e)]
    if not shown:
        return None
    alpha = bool(params.get("alpha"))
    tiles, labels = entry_tiles(folder, shown, alpha)
    columns = palette_cols(int(params.get("diversity") or 1), cols or int(params.get("cols") or 8))
    write_png(folder / name, images.palette(tiles, labels, columns, title, checker=alpha))
    return name


def write_palette_gif(folder: Path, layer: str, movies, cols: int) -> None:
    """palette.gif: the `movies` ((label, frames) pairs) shrunk and side by side; nothing without movies."""
    if movies:
        frames = images.palette_movie([[images.shrink(f) for f in frames] for _, frames in movies],
                                      [label for label, _ in movies], cols, layer)
        atomic_write(Path(folder) / (PALETTE[:-len(".png")] + ".gif"), images.gif_bytes(list(frames)))


# --- a layer folder's manifests, merged ----------------------------------------------------------------

SHOWN = 10  # filter indices listed in a warning before "..."


@dataclasses.dataclass(frozen=True)
class LayerView:
    """One layer folder as its manifests describe it: the filters in scope, with their entries."""

    layer: str
    folder: Path
    manifest: dict  # the first manifest merged (its model and params are the page's)
    manifests: tuple[Path, ...]  # merged
    entries: tuple[dict, ...]  # by index; only filters in scope
    scope: tuple[int, ...]  # the filters the manifests ask for (planned, or one run's part)
    palettes: tuple[str, ...]  # file names in `folder`
    notes: tuple[str, ...] = ()  # manifests left out, and why
    shards: tuple = ()  # each merged manifest's `shard` (`K/N`, or None)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self.entries:
            counts[filter_status(entry)] += 1
        return counts

    @property
    def missing(self) -> tuple[int, ...]:
        listed = {int(e["index"]) for e in self.entries}
        return tuple(i for i in self.scope if i not in listed)

    @property
    def unconverged(self) -> tuple[int, ...]:
        return tuple(int(e["index"]) for e in self.entries if filter_status(e) in UNCONVERGED)

    @property
    def seconds(self) -> float:
        """Rendering time of the listed filters (the sum of the manifest's per-filter seconds)."""
        return round(sum(float(e.get("seconds") or 0) for e in self.entries), 3)

    def warnings(self) -> list[str]:
        """What a reader of the page should know, one sentence each."""
        by_status = {s: [int(e["index"]) for e in self.entries if filter_status(e) == s] for s in STATUSES}
        nan = [int(e["index"]) for e in self.entries if e.get("status") == "failed"]
        slow = [i for i in by_status["failed"] if i not in nan]
        lines = []
        if slow:
            lines.append(f"{_count(slow)} did not converge ({_shown(slow)}); try more --steps or another --param")
        if nan:
            lines.append(f"{_count(nan)} hit NaN/Inf even after a restart with a smaller step ({_shown(nan)}); "
                         "no PNG")
        if by_status[STATUS_DEAD]:
            lines.append(f"{_count(by_status[STATUS_DEAD])} dead ({_shown(by_status[STATUS_DEAD])}): nothing the "
                         "rescue tried fired them")
        if by_status[STATUS_UNWINNABLE]:
            classes = by_status[STATUS_UNWINNABLE]
            lines.append(f"{_count(classes, 'class', 'classes')} unwinnable ({_shown(classes)}): no picture the "
                         "rescue tried was put in its class")
        if self.missing:
            parts = _missing_shards(self.shards)
            where = f" (no manifest from part {', '.join(parts)})" if parts else ""
            lines.append(f"{_count(self.missing)} not finished ({_shown(self.missing)}){where}; run them "
                         "with --resume (and `filtervis stitch` for shards)")
        return lines + list(self.notes)

def _count(indices, one: str = "filter", many: str = "filters") -> str:
    return f"{len(indices)} {one if len(indices) == 1 else many}"


def _shown(indices) -> str:
    return ", ".join(map(str, list(indices)[:SHOWN])) + (" ..." if len(indices) > SHOWN else "")


def _missing_shards(shards) -> list[str]:
    """`K/N` of the parts no merged manifest came from (none unless every manifest is a part)."""
    if not shards or not all(shards):
        return []
    total = int(shards[0].split("/")[1])
    seen = {int(s.split("/")[0]) for s in shards}
    return [f"{k}/{total}" for k in range(1, total + 1) if k not in seen]


def layer_folders(out: str | Path) -> list[Path]:
    """The layer folders of a run's OUT (sorted), or [OUT] when OUT is itself a layer folder."""
    out = Path(out)
    if manifest_files(out):
        return [out]
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.is_dir() and manifest_files(p))


def read_view(folder: Path, paths: list[Path] | None = None, scope: str = "planned") -> LayerView:
    """The LayerView of a layer folder from `paths` (default: all its manifests). `scope` "planned" keeps
    the filters of the whole command, "part" those of the first manifest's run (its --shard part).
    OutputError when no manifest can be read."""
    folder = Path(folder)
    paths = list(paths if paths is not None else manifest_files(folder))
    read, notes = [], []
    for path in paths:
        try:
            read.append((path, read_manifest(path)))
        except OutputError as exc:
            notes.append(str(exc).split(";")[0] + "; not shown")
    if not read:
        raise OutputError(f"{folder}: no readable manifest; " + (notes[0] if notes else "give a run's --out folder"))
    (first_path, first), merged = read[0], [read[0]]
    for path, manifest in read[1:]:
        difference = compare_params(first, manifest)
        if not difference and manifest.get("planned") != first.get("planned"):
            difference = ("filter list", first.get("planned"), manifest.get("planned"))
        if difference:
            key, before, now = difference
            notes.append(f"{path.name} comes from another command ({key}={now!r}, {first_path.name}: "
                         f"{before!r}); not shown")
        else:
            merged.append((path, manifest))
    found: dict[int, dict] = {}
    for _, manifest in merged:
        for entry in manifest["filters"]:
            found.setdefault(int(entry["index"]), entry)
    wanted = first.get("part" if scope == "part" else "planned")
    scope_list = [int(i) for i in wanted] if isinstance(wanted, list) else sorted(found)
    palettes = [m["palette"] for _, m in merged if m.get("palette") and (folder / m["palette"]).is_file()]
    return LayerView(str(first.get("layer")), folder, first, tuple(p for p, _ in merged),
                     tuple(found[i] for i in sorted(found) if i in set(scope_list)), tuple(scope_list),
                     tuple(dict.fromkeys(palettes)), tuple(notes), tuple(m.get("shard") for _, m in merged))


def read_views(out: str | Path) -> list[LayerView]:
    """A LayerView per layer folder of OUT (see `layer_folders`), in the model's order (the manifests'
    `model.layer_order`; then by folder); a folder none of whose manifests can be read is left out, so a
    broken folder beside a run never stops the run's page."""
    views = []
    for folder in layer_folders(out):
        try:
            views.append(read_view(folder))
        except OutputError:
            continue

    def order(view):
        position = view.manifest.get("model", {}).get("layer_order")
        return (0, position, view.folder.name) if isinstance(position, int) else (1, 0, view.folder.name)

    return sorted(views, key=order)


def written_views(folders, shard: tuple[int, int] | None = None) -> list[LayerView]:
    """What one command wrote: per layer folder, its own manifest (the shard's, for `--shard K/N`)
    and its own part of the filters; other shards in the folder are not counted."""
    name = manifest_name(shard)
    return [read_view(Path(f), [Path(f) / name], scope="part") for f in folders]
