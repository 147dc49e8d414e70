"""A run's folders as its manifests describe them: each layer folder's manifests merged into one
`LayerView` (the filters in scope, their entries, what is missing), and the views of a whole OUT. What
the page (report.py), `filtervis diff` and the command line's summary read; they never write.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .errors import OutputError
from .records import STATUSES, UNCONVERGED, STATUS_DEAD, STATUS_UNWINNABLE, filter_status
from .files import manifest_files, manifest_name, read_manifest
from .store import compare_params

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
            lines.append(f"{count_text(slow)} did not converge ({shown_text(slow)}); try more --steps or another --param")
        if nan:
            lines.append(f"{count_text(nan)} hit NaN/Inf even after a restart with a smaller step ({shown_text(nan)}); "
                         "no PNG")
        if by_status[STATUS_DEAD]:
            lines.append(f"{count_text(by_status[STATUS_DEAD])} dead ({shown_text(by_status[STATUS_DEAD])}): nothing the "
                         "rescue tried fired them")
        if by_status[STATUS_UNWINNABLE]:
            classes = by_status[STATUS_UNWINNABLE]
            lines.append(f"{count_text(classes, 'class', 'classes')} unwinnable ({shown_text(classes)}): no picture the "
                         "rescue tried was put in its class")
        if self.missing:
            parts = _missing_shards(self.shards)
            where = f" (no manifest from part {', '.join(parts)})" if parts else ""
            lines.append(f"{count_text(self.missing)} not finished ({shown_text(self.missing)}){where}; run them "
                         "with --resume (and `filtervis stitch` for shards)")
        return lines + list(self.notes)

def count_text(indices, one: str = "filter", many: str = "filters") -> str:
    return f"{len(indices)} {one if len(indices) == 1 else many}"


def shown_text(indices) -> str:
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
