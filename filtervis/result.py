"""What `render` gives for one layer: its records, images, palette, and `save`; and `MemorySink`, the
sink of run.execute that keeps each layer's records in memory as a Result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import files, images, records, report, store
from .errors import SpecError
from .records import WITH_PNG


class Result:
    """What `render` gave: `filters` (one FilterRecord each, in order), `images` (uint8 [H, W, C] each,
    as the PNG holds it; None for a failed filter), `palette()`, `save(out)`."""

    def __init__(self, plan, filters: tuple):
        """`plan`: the plan.LayerPlan that rendered `filters`."""
        self.plan, self.filters = plan, filters

    @property
    def layer(self) -> str:
        return self.plan.layer

    @property
    def images(self) -> tuple:
        return tuple(r.image for r in self.filters)

    @property
    def manifest(self) -> dict:
        """The manifest `save` writes (its `created` time is when it is asked for)."""
        entries = {r.index: store.entry(r, self.plan.start_digests) for r in self.filters}
        return store.finished(store.new_manifest(self.plan), entries, list(entries),
                              files.PALETTE if self._tiles() else None)

    def _tiles(self):
        return [r for r in self.filters if r.status in WITH_PNG or any(p.image is not None for p in r.variants)]

    def palette_array(self, cols: int | None = None) -> np.ndarray:
        """The labeled palette, uint8 [H, W, C] (SpecError when no filter has an image)."""
        shown = self._tiles()
        if not shown:
            raise SpecError(f"no filter of '{self.layer}' has an image (all failed); nothing to stitch")
        tiles, labels = records.palette_tiles(records.record_tiles(shown))
        spec = self.plan.spec
        return images.palette(tiles, labels, store.palette_cols(spec.diversity, cols or spec.cols), self.layer,
                              checker=spec.alpha)

    def palette(self, cols: int | None = None):
        """The labeled palette as a PIL image."""
        return images.to_pil(self.palette_array(cols))

    def palette_png(self) -> bytes | None:
        """The palette as PNG bytes, as palette.png holds them (None when no filter has an image)."""
        if not self._tiles():
            return None
        return files.png_bytes(self.palette_array())

    _repr_png_ = palette_png  # Jupyter shows a result as its palette

    def save(self, out) -> Path:
        """Write what `filtervis run --out OUT` writes for this layer: OUT/<layer>/filter_NNNN.png,
        palette.png, manifest.json (and the GIFs with gif=True), and OUT/index.html (see report.py).
        Returns the layer folder."""
        files.check_writable(out)
        writer = store.LayerWriter(Path(out) / files.layer_dirname(self.layer), store.new_manifest(self.plan),
                                   digests=self.plan.start_digests)
        writer.add(self.filters)
        writer.finish([r.index for r in self.filters], self.layer)
        if self.plan.spec.report:
            report.write_report(Path(out))
        return writer.folder

    def __repr__(self):
        converged = sum(r.converged for r in self.filters)
        return f"<filtervis.Result {self.layer}: {converged}/{len(self.filters)} filters converged>"


class MemorySink:
    """render's sink: each layer's records kept in memory, closed into a Result. `on_batch(plan,
    records)` hears of each finished batch."""

    def __init__(self, on_batch=None):
        self.on_batch = on_batch

    def check(self) -> None:
        pass

    def earlier_batch(self, layer: str) -> None:
        return None

    def open(self, plans) -> list["Collected"]:
        return [Collected(plan, self.on_batch) for plan in plans]

    def close(self, collected: "Collected", plan, complete: bool) -> Result:
        return Result(plan, tuple(collected.records))

    def where(self, collected: "Collected") -> str:
        return ""


class Collected:
    """One layer's records so far (`entries`: {filter: record})."""

    def __init__(self, plan, on_batch=None):
        self.plan, self.on_batch, self.records, self.entries = plan, on_batch, [], {}

    def add(self, batch) -> None:
        self.records += batch
        self.entries.update((r.index, r) for r in batch)
        if self.on_batch:
            self.on_batch(self.plan, batch)
