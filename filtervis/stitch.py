"""Merge the parts of a sharded run into one palette.png and manifest.json per layer.

The parts of `filtervis run --shard K/N` may share one --out folder (each writes its own
`manifest.shard-K-of-N.json`, the PNG names never collide) or live in separate folders, one per
machine (`stitch OUT --from DIR ...` copies their PNGs into OUT). Parts are merged only when they come
from one command: same layer, model file and parameters (see `store.compare_params`) and the same
filter list. Filters no part has finished are reported, never invented.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from . import files, store
from .errors import OutputError, SpecError
from .records import STATUS_DONE, WITH_PNG
from .report import write_report
from .store import compare_params


@dataclasses.dataclass(frozen=True)
class StitchReport:
    """One merged layer: how many of its planned filters are finished, which are missing."""

    layer: str
    folder: Path
    planned: int
    done: int
    missing: tuple[int, ...]
    missing_shards: tuple[str, ...]  # `K/N` of parts that left no manifest


@dataclasses.dataclass(frozen=True)
class _Part:
    folder: Path
    path: Path
    manifest: dict


def stitch(out: str | Path, sources: tuple = (), cols: int | None = None, report: bool = True) -> list[StitchReport]:
    """Merge every layer found in `out` and `sources` into `out/<layer>/`; one report per layer. Then,
    with `report`, rebuild `out/index.html` (see report.py).

    A folder is either a run's --out (layer folders inside) or one layer folder itself. With
    `sources`, `out` may be a new folder.
    """
    out = Path(out)
    roots = [out, *(Path(s) for s in sources)]
    created = bool(sources) and not out.exists()  # merging other folders into a new one
    if created:
        files.check_writable(out)
        out.mkdir(parents=True)
    try:
        reports = _stitch(out, roots, cols)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    if report:
        write_report(out)
    return reports


def _stitch(out: Path, roots: list[Path], cols: int | None) -> list[StitchReport]:
    for root in roots:
        if not root.is_dir():
            raise OutputError(f"{root} is not a folder; give the --out folder of `filtervis run --shard K/N`")
    layers: dict[str, list[_Part]] = {}
    for root in roots:
        folders = [root] if files.manifest_files(root) else sorted(p for p in root.iterdir() if p.is_dir())
        for folder in folders:
            for path in files.manifest_files(folder):
                manifest = files.read_manifest(path)
                layers.setdefault(str(manifest.get("layer")), []).append(_Part(folder, path, manifest))
    if not layers:
        raise OutputError(f"no manifest found in {', '.join(map(str, roots))}; give the --out folder of "
                          "`filtervis run --shard K/N`")
    for parts in layers.values():  # refuse before anything is written
        _check_parts(parts)
    single = bool(files.manifest_files(out))
    return [_stitch_layer(out if single else out / files.layer_dirname(layer), layer, parts, cols)
            for layer, parts in layers.items()]


def _check_parts(parts: list[_Part]) -> None:
    """SpecError unless every part comes from one command (parameters and filter list)."""
    first = parts[0]
    for part in parts[1:]:
        difference = compare_params(first.manifest, part.manifest)
        if not difference and part.manifest.get("planned") != first.manifest.get("planned"):
            difference = ("filter list", first.manifest.get("planned"), part.manifest.get("planned"))
        if difference:
            key, before, now = difference
            raise SpecError(f"cannot stitch {part.path} ({key}={now!r}) with {first.path} ({key}={before!r}); "
                            "stitch only the parts of one command")


def _stitch_layer(dest: Path, layer: str, parts: list[_Part], cols: int | None) -> StitchReport:
    first = parts[0]
    planned = [int(i) for i in first.manifest.get("planned") or []]
    found: dict[int, tuple[dict, Path]] = {}
    for part in sorted(parts, key=lambda p: p.folder.resolve() != dest.resolve()):  # dest's own files first
        for entry in part.manifest["filters"]:
            index = int(entry["index"])
            status = entry.get("status", STATUS_DONE)
            if index in found or status not in WITH_PNG:
                continue
            source = part.folder / str(entry.get("file"))
            if source.is_file():
                found[index] = (dict(entry, status=status), part.folder)
    params = first.manifest["params"]
    missing = tuple(i for i in planned if i not in found)
    manifest = dict(first.manifest, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), shard=None,
                    params=dict(params, shard=None), part=planned, stitched_from=[str(p.path) for p in parts])
    writer = store.LayerWriter(dest, manifest)
    writer.copy(found)
    writer.finish(planned, layer, cols, movie=False)
    return StitchReport(layer, dest, len(planned), len(planned) - len(missing), missing, _missing_shards(parts))


def _missing_shards(parts: list[_Part]) -> tuple[str, ...]:
    """`K/N` of the parts of a sharded run that left no manifest (none when no part was sharded)."""
    shards = [p.manifest.get("shard") for p in parts if p.manifest.get("shard")]
    if not shards:
        return ()
    total = int(shards[0].split("/")[1])
    seen = {int(s.split("/")[0]) for s in shards if int(s.split("/")[1]) == total}
    return tuple(f"{k}/{total}" for k in range(1, total + 1) if k not in seen)
