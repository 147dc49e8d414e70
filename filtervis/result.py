"""What a render gives: a record per filter (what the manifest lists) with its image, and the
`Result` of a layer (images, palette, `save`), plus the writers `filtervis run` shares with `save`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .config import RunSpec
from .errors import SpecError

STATUS_DONE, STATUS_FAILED = "done", "failed"  # failed: NaN/Inf even after the restart; no PNG
STATUS_DEAD = "dead"  # nothing the rescue tried fired the filter (see rescue.py); it has a PNG all the same
WITH_PNG = (STATUS_DONE, STATUS_DEAD)


@dataclasses.dataclass(frozen=True)
class FilterRecord:
    """One rendered filter (or objective): what the manifest lists, plus its image.

    `status` is done, dead (nothing fired it; it still has an image) or failed (NaN/Inf even after a
    restart: `image` is None). `converged`: the image drives the filter above 0 and at least twice as
    high as uniform noise does."""

    index: int
    status: str
    activation: float | None
    noise_activation: float
    converged: bool
    steps: int
    seconds: float
    loss: float | None = None
    tv: float | None = None
    lp: float | None = None
    scale: float = 1.0
    restarted: bool = False
    rescued: bool = False
    peak_preactivation: float | None = None
    image: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    frames: tuple = dataclasses.field(default=(), repr=False, compare=False)
    variant: int | None = None  # which picture of its filter (--diversity), else None
    variants: tuple = ()  # --diversity: the filter's pictures, one FilterRecord each (this record sums them up)

    @property
    def file(self) -> str | None:
        from .outputs import filter_filename

        if self.variants:
            return self.variants[0].file
        return filter_filename(self.index, self.variant) if self.status in WITH_PNG else None

    @property
    def pictures(self) -> tuple:
        """The records with an image of their own: the variants (--diversity), else this record."""
        return self.variants or (self,)

    def entry(self) -> dict:
        """The record as the manifest lists it."""
        entry = {"index": self.index, "status": self.status, "file": self.file, "steps": self.steps}
        if self.variant is not None:
            entry["variant"] = self.variant
        for key in ("activation", "noise_activation", "loss", "tv", "lp", "scale"):
            value = getattr(self, key)
            entry[key] = None if value is None else round(value, 6)
        entry.update(converged=self.converged, restarted=self.restarted, seconds=round(self.seconds, 3),
                     rescued=self.rescued)
        if self.status == STATUS_DEAD:
            entry["peak_preactivation"] = round(self.peak_preactivation, 6)
        if self.variants:
            entry["variants"] = [v.entry() for v in self.variants]
        return entry


def group_record(index: int, pictures: list) -> FilterRecord:
    """One filter's record over its --diversity pictures (FilterRecords with `variant` set): converged
    when every picture is; its activation the weakest picture's; failed when any failed; its image picture
    0's; steps and seconds summed."""
    finite = [p for p in pictures if p.status != STATUS_FAILED]
    status = (STATUS_FAILED if len(finite) < len(pictures) else
              STATUS_DEAD if all(p.status == STATUS_DEAD for p in pictures) else STATUS_DONE)
    weakest = min(finite, key=lambda p: p.activation) if finite else pictures[0]
    return dataclasses.replace(
        weakest, index=index, status=status, converged=all(p.converged for p in pictures),
        steps=sum(p.steps for p in pictures), seconds=sum(p.seconds for p in pictures),
        restarted=any(p.restarted for p in pictures), rescued=any(p.rescued for p in pictures),
        image=pictures[0].image, frames=(), variant=None, variants=tuple(pictures))


def palette_tiles(records) -> tuple[list, list]:
    """(tiles, labels) of a palette of `records` with images: one tile per picture, labeled with the
    filter index (`7`, or `7_2` for picture 2 of a --diversity run); a failed picture of a filter with
    others is a black tile, so that every filter keeps its row."""
    tiles, labels = [], []
    for rec in records:
        shape = next(p.image.shape for p in rec.pictures if p.image is not None)
        for p in rec.pictures:
            tiles.append(p.image if p.image is not None else np.zeros(shape, np.uint8))
            labels.append(str(rec.index) if p.variant is None else f"{rec.index}_{p.variant}")
    return tiles, labels


def entry_tiles(folder: Path, entries, alpha: bool) -> tuple[list, list]:
    """(tiles, labels) of the palette of manifest `entries` whose PNGs are in `folder` (see palette_tiles)."""
    from . import outputs

    tiles, labels = [], []
    for entry in entries:
        pictures = entry.get("variants") or [entry]
        present = [p for p in pictures if p.get("file") and (folder / p["file"]).is_file()]
        shape = outputs.read_png(folder / present[0]["file"], alpha=alpha).shape
        for p in pictures:
            has = p.get("file") and (folder / p["file"]).is_file()
            tiles.append(outputs.read_png(folder / p["file"], alpha=alpha) if has else np.zeros(shape, np.uint8))
            labels.append(str(entry["index"]) if p.get("variant") is None else f"{entry['index']}_{p['variant']}")
    return tiles, labels


def palette_cols(spec: RunSpec, cols: int | None = None) -> int:
    """Palette columns: `cols` (else --cols), or one row per filter with --diversity."""
    return spec.diversity if spec.diversity > 1 else (cols or spec.cols)


def record(result, restarted: bool = False, rescued: bool = False, variant: int | None = None) -> FilterRecord:
    """The FilterRecord of an optimize.FilterResult; its image gets the result's alpha as a last
    channel when it has one (--alpha)."""
    finite = bool(result.finite)
    image = result.image
    if image is not None and result.alpha is not None:
        image = np.concatenate([image, result.alpha], axis=-1)
    status = STATUS_DEAD if finite and result.dead else STATUS_DONE if finite else STATUS_FAILED
    return FilterRecord(
        result.index, status, result.activation if finite else None, result.noise_activation,
        bool(result.converged), result.steps, result.seconds, result.loss if finite else None,
        result.tv if finite else None, result.lp if finite else None, result.scale, restarted, rescued,
        result.peak if status == STATUS_DEAD else None, image if finite else None, result.frames, variant)


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
                        palette=self._palette_name() if self._tiles() else None)
        return manifest

    def _tiles(self):
        return [r for r in self.filters if r.status in WITH_PNG or any(p.image is not None for p in r.variants)]

    def _palette_name(self) -> str:
        from .outputs import palette_name

        return palette_name(None)

    def palette_array(self, cols: int | None = None) -> np.ndarray:
        """The labeled palette, uint8 [H, W, C] (SpecError when no filter has an image)."""
        from . import images

        records = self._tiles()
        if not records:
            raise SpecError(f"no filter of '{self.layer}' has an image (all failed); nothing to stitch")
        tiles, labels = palette_tiles(records)
        return images.palette(tiles, labels, palette_cols(self.job.spec, cols), self.layer, checker=self.job.spec.alpha)

    def palette(self, cols: int | None = None):
        """The labeled palette as a PIL image."""
        from . import images

        return images.to_pil(self.palette_array(cols))

    def palette_png(self) -> bytes | None:
        """The palette as PNG bytes, as palette.png holds them (None when no filter has an image)."""
        if not self._tiles():
            return None
        from . import outputs

        return outputs.png_bytes(self.palette_array())

    _repr_png_ = palette_png  # Jupyter shows a result as its palette

    def save(self, out) -> Path:
        """Write what `filtervis run --out OUT` writes for this layer: OUT/<layer>/filter_NNNN.png,
        palette.png, manifest.json (and the GIFs with gif=True), and OUT/index.html (see report.py).
        Returns the layer folder."""
        from . import outputs, report

        outputs.check_writable(out)
        folder = Path(out) / outputs.layer_dirname(self.layer)
        write_records(folder, self.filters)
        if self._tiles():
            outputs.write_png(folder / outputs.palette_name(None), self.palette_array())
        write_palette_gif(folder, self.layer, self.filters, self.job.spec.cols)
        report.save_manifest(folder, self.manifest)  # and OUT/index.html, as a run writes it
        return folder

    def __repr__(self):
        converged = sum(r.converged for r in self.filters)
        return f"<filtervis.Result {self.layer}: {converged}/{len(self.filters)} filters converged>"


def write_records(folder: Path, records) -> list[Path]:
    """Write each record's PNG (and GIF, when it has frames); returns the paths written."""
    from . import images, outputs

    written = []
    for rec in (p for r in records for p in r.pictures):
        if rec.status in WITH_PNG:
            path = folder / rec.file
            outputs.write_png(path, rec.image)
            written.append(path)
            if rec.frames:
                gif = path.with_suffix(".gif")
                outputs.atomic_write(gif, images.gif_bytes(list(rec.frames)))
                written.append(gif)
    return written


def write_palette_gif(folder: Path, layer: str, records, cols: int) -> None:
    """palette.gif: the records' frames (shrunk) side by side, when they have frames (gif=True)."""
    from . import images, outputs

    movies = [r for r in records if r.frames]
    if movies:
        frames = images.palette_movie([[images.shrink(f) for f in r.frames] for r in movies],
                                      [str(r.index) for r in movies], cols, layer)
        outputs.atomic_write(folder / (outputs.PALETTE[:-len(".png")] + ".gif"), images.gif_bytes(list(frames)))
