"""Which filters a run renders: `--filters` parsed once (`parse_filters`) and resolved per layer
(`FilterSpec.resolve`: indices and ranges, the first N, or N drawn from the seed and the layer's name),
and the file name of a filter's picture."""

from __future__ import annotations

import dataclasses
import re

from .errors import SpecError

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_DRAW = re.compile(r"^(random|first):(\d+)$")
_SPEC_HELP = "use all, 0-63, 3,7,9, 0-7,12, first:8 or random:16"


@dataclasses.dataclass(frozen=True)
class FilterSpec:
    """A parsed `--filters` value, resolved per layer: `random` > 0 draws that many (from the seed and the
    layer's name, so each layer's draw is its own), `first` > 0 takes the first that many; otherwise
    `indices` (None means all)."""

    text: str
    indices: tuple[int, ...] | None = None
    random: int = 0
    first: int = 0

    def resolve(self, count: int, seed: int, layer: str = "", clip: bool = False) -> list[int]:
        """Filter indices for a layer with `count` filters, sorted. Past the count: SpecError, or with
        `clip` (a layer chosen by a pattern or `all`) the indices past it are left out and a draw takes
        at most `count` (see `clipped`)."""
        where = f" '{layer}'" if layer else ""
        wanted = self.random or self.first
        if wanted > count and not clip:
            kind = "random" if self.random else "first"
            raise SpecError(f"--filters {self.text} asks for {wanted} filters but the layer{where} has only "
                            f"{count}; use {kind}:{count} or fewer")
        if self.random:
            import zlib

            import numpy as np

            rng = np.random.default_rng([seed, zlib.crc32(layer.encode())])
            return sorted(int(i) for i in rng.choice(count, min(self.random, count), replace=False))
        if self.first:
            return list(range(min(self.first, count)))
        if self.indices is None:
            return list(range(count))
        bad = [i for i in self.indices if i >= count]
        if bad and not clip:
            raise SpecError(f"filter index {bad[0]} is past the {count} filters of layer{where} (valid: 0-{count - 1})")
        return [i for i in self.indices if i < count]

    def clipped(self, count: int) -> str | None:
        """What `resolve(count, clip=True)` left out, as the manifest says it; None when nothing."""
        wanted = self.random or self.first
        if wanted > count:
            return f"--filters {self.text}: the layer has only {count} filters, all of them taken"
        past = [i for i in self.indices or () if i >= count]
        if past:
            return (f"--filters {self.text}: {len(past)} ind{'ex' if len(past) == 1 else 'ices'} past the layer's "
                    f"{count} filters left out ({past[0]}{'...' if len(past) > 1 else ''})")
        return None


def parse_filters(text: str) -> FilterSpec:
    """Parse `all`, `0-63`, `3,7,9`, `0-7,12`, `first:8` or `random:16`; raises SpecError naming the bad part."""
    text = str(text).strip()
    if text == "all":
        return FilterSpec(text)
    match = _DRAW.match(text)
    if match:
        kind, n = match.group(1), int(match.group(2))
        if n < 1:
            raise SpecError(f"--filters {text}: {kind} needs 1 or more filters; {_SPEC_HELP}")
        return FilterSpec(text, **{kind: n})
    indices: set[int] = set()
    for part in text.split(","):
        match = _RANGE.match(part.strip())
        if not match:
            raise SpecError(f"--filters {text!r}: cannot read {part!r}; {_SPEC_HELP}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise SpecError(f"--filters {text!r}: range {part!r} runs backwards; write {hi}-{lo}")
        indices.update(range(lo, hi + 1))
    return FilterSpec(text, indices=tuple(sorted(indices)))


def filter_filename(index: int, variant: int | None = None) -> str:
    """`filter_0007.png`, or `filter_0007_2.png` for picture 2 of filter 7 (--diversity)."""
    return f"filter_{index:04d}.png" if variant is None else f"filter_{index:04d}_{variant}.png"
