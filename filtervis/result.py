"""What `render` gives for one layer: its records, images, palette, and `save`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import images, report, store
from .errors import SpecError
from .records import WITH_PNG, movies, palette_tiles, pictures


class Result:
    """What `render` gave: `filters` (one FilterRecord each, in order), `images` (uint8 [H, W, C] each,
    as the PNG holds it; None for a failed filter), `palette()`, `save(out)`."""

    def __init__(self, job, filters: tuple):
        """`job`: the api.Job that rendered `filters`."""
        self.job, self.filters = job, filters

    @property
    def layer(self) -> str:
        return self.job.layer

    @property
    def images(self) -> tuple:
        return tuple(r.image for r in self.filters)

    @property
    def manifest(self) -> dict:
        """The manifest `save` writes (its `created` time is when it is asked for)."""
        manifest = self.job.manifest()
        manifest.update(filters=[r.entry() for r in self.filters], complete=True,
                        palette=store.palette_name(None) if self._tiles() else None)
        return manifest

    def _tiles(self):
        return [r for r in self.filters if r.status in WITH_PNG or any(p.image is not None for p in r.variants)]

    def palette_array(self, cols: int | None = None) -> np.ndarray:
        """The labeled palette, uint8 [H, W, C] (SpecError when no filter has an image)."""
        records = self._tiles()
        if not records:
            raise SpecError(f"no filter of '{self.layer}' has an image (all failed); nothing to stitch")
        tiles, labels = palette_tiles(records)
        spec = self.job.spec
        return images.palette(tiles, labels, store.palette_cols(spec.diversity, cols or spec.cols), self.layer,
                              checker=spec.alpha)

    def palette(self, cols: int | None = None):
        """The labeled palette as a PIL image."""
        return images.to_pil(self.palette_array(cols))

    def palette_png(self) -> bytes | None:
        """The palette as PNG bytes, as palette.png holds them (None when no filter has an image)."""
        if not self._tiles():
            return None
        return store.png_bytes(self.palette_array())

    _repr_png_ = palette_png  # Jupyter shows a result as its palette

    def save(self, out) -> Path:
        """Write what `filtervis run --out OUT` writes for this layer: OUT/<layer>/filter_NNNN.png,
        palette.png, manifest.json (and the GIFs with gif=True), and OUT/index.html (see report.py).
        Returns the layer folder."""
        store.check_writable(out)
        folder = Path(out) / store.layer_dirname(self.layer)
        manifest = self.manifest
        store.write_pictures(folder, pictures(self.filters))
        store.write_palette(folder, store.palette_name(None), manifest["filters"], self.layer, manifest["params"])
        store.write_palette_gif(folder, self.layer, movies(self.filters), self.job.spec.cols)
        store.write_manifest(folder, manifest)
        if self.job.spec.report:
            report.write_report(Path(out))
        return folder

    def __repr__(self):
        converged = sum(r.converged for r in self.filters)
        return f"<filtervis.Result {self.layer}: {converged}/{len(self.filters)} filters converged>"
