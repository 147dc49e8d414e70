"""A record per rendered filter: what the manifest lists, with its image (and its --diversity pictures);
the statuses a filter can end in, its picture's file name, and the tiles of a palette. Numbers and
names only: the files are store.py's."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import appearance
from .filters import filter_filename

STATUS_DONE, STATUS_FAILED = "done", "failed"  # failed: NaN/Inf even after the restart; no PNG
STATUS_DEAD = "dead"  # a channel nothing the rescue tried fired (see rescue.py); it has a PNG all the same
STATUS_UNWINNABLE = "unwinnable"  # a class no image the rescue tried put first (see rescue.py); it has a PNG
WITH_PNG = (STATUS_DONE, STATUS_DEAD, STATUS_UNWINNABLE)
# what a reader is told of a filter (filter_status)
STATUSES = ("converged", "rescued", STATUS_DEAD, STATUS_UNWINNABLE, "failed")
UNCONVERGED = (STATUS_DEAD, STATUS_UNWINNABLE, "failed")


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


@dataclasses.dataclass(frozen=True)
class FilterRecord:
    """One rendered filter (or objective): what the manifest lists, plus its image.

    `status` is done, dead (a channel nothing fired; it still has an image), unwinnable (a class no
    picture was put in; it still has an image) or failed (NaN/Inf even after a restart: `image` is None).
    `converged`: the image drives the filter above 0 and at least twice as high as uniform noise does;
    for a class, the model puts the image in it. `peak_preactivation` (dead) is the highest
    pre-activation anything tried gave, `best_lead` (unwinnable) the most the class ever led the runner-up
    (see optimize.FilterResult.peak)."""

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
    float32: bool = False  # --precision bfloat16/float16: rendered again in float32 (see schedule.py)

    @property
    def file(self) -> str | None:
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
        if self.float32:  # the run's precision did not converge it; this picture is float32's
            entry["precision"] = "float32"
        if self.image is not None and not self.variants:  # what a person sees (see appearance.py)
            entry.update(repeat=round(appearance.repeat(self.image), 4),
                         clipped=round(appearance.clipped(self.image), 4))
        if self.status == STATUS_DEAD:
            entry["peak_preactivation"] = round(self.peak_preactivation, 6)
        if self.status == STATUS_UNWINNABLE:
            entry["best_lead"] = round(self.peak_preactivation, 6)
        if self.variants:
            entry["variants"] = [v.entry() for v in self.variants]
        return entry


def group_record(index: int, pictures: list) -> FilterRecord:
    """One filter's record over its --diversity pictures (FilterRecords with `variant` set): converged
    when every picture is; its activation the weakest picture's; failed when any failed, dead (unwinnable)
    when every picture is; its image picture 0's; steps and seconds summed."""
    finite = [p for p in pictures if p.status != STATUS_FAILED]
    kinds = {p.status for p in pictures}
    status = (STATUS_FAILED if len(finite) < len(pictures) else
              kinds.pop() if len(kinds) == 1 and kinds <= {STATUS_DEAD, STATUS_UNWINNABLE} else STATUS_DONE)
    weakest = min(finite, key=lambda p: p.activation) if finite else pictures[0]
    return dataclasses.replace(
        weakest, index=index, status=status, converged=all(p.converged for p in pictures),
        steps=sum(p.steps for p in pictures), seconds=sum(p.seconds for p in pictures),
        restarted=any(p.restarted for p in pictures), rescued=any(p.rescued for p in pictures),
        float32=any(p.float32 for p in pictures), image=pictures[0].image, frames=(), variant=None, variants=tuple(pictures))


def palette_tiles(filters) -> tuple[list, list]:
    """(tiles, labels) of a palette: `filters` are (index, pictures) pairs, each picture a (variant,
    image uint8 [H, W, C] or None) pair (variant None unless --diversity). One tile per picture, labeled
    with the filter index (`7`, or `7_2` for picture 2 of a --diversity run); a missing picture of a
    filter with others is a black tile, so that every filter keeps its row."""
    tiles, labels = [], []
    for index, pictures in filters:
        shape = next(image.shape for _, image in pictures if image is not None)
        for variant, image in pictures:
            tiles.append(image if image is not None else np.zeros(shape, np.uint8))
            labels.append(str(index) if variant is None else f"{index}_{variant}")
    return tiles, labels


def record_tiles(records) -> list[tuple]:
    """The (index, pictures) pairs of `palette_tiles` for in-memory records."""
    return [(r.index, [(p.variant, p.image) for p in r.pictures]) for r in records]


def record(result, restarted: bool = False, rescued: bool = False, variant: int | None = None,
           float32: bool = False) -> FilterRecord:
    """The FilterRecord of an optimize.FilterResult; its image gets the result's alpha as a last
    channel when it has one (--alpha); `float32`: rendered again in float32 (--precision)."""
    finite = bool(result.finite)
    image = result.image
    if image is not None and result.alpha is not None:
        image = np.concatenate([image, result.alpha], axis=-1)
    hopeless = STATUS_UNWINNABLE if result.lead is not None else STATUS_DEAD
    status = hopeless if finite and result.dead else STATUS_DONE if finite else STATUS_FAILED
    return FilterRecord(
        result.index, status, result.activation if finite else None, result.noise_activation,
        bool(result.converged), result.steps, result.seconds, result.loss if finite else None,
        result.tv if finite else None, result.lp if finite else None, result.scale, restarted, rescued,
        result.peak if status == hopeless else None, image if finite else None, result.frames, variant,
        float32=float32)




def pictures(records) -> list[tuple]:
    """(file name, image, frames) of every picture of `records` that has a PNG (see store.write_pictures)."""
    return [(p.file, p.image, p.frames) for r in records for p in r.pictures if p.status in WITH_PNG]


def movies(records) -> list[tuple]:
    """(label, frames) of the records that kept frames (gif=True), for store.write_palette_gif."""
    return [(str(r.index), r.frames) for r in records if r.frames]
