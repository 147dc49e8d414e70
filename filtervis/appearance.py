"""What a person sees in the pictures, measured from their pixels alone (uint8 [H, W, C] arrays).

The model's measures (activation, strength, retention) cannot see three faults a person sees at once:

- repeat: a picture made of copies of a smaller one. The correlation of a picture with itself
  circularly shifted by half its height and half its width: 1.0 for 2 x 2 copies of one picture, about
  0.1 for photographs, about 0 for noise.
- clipped: colour out of range. The share of channel values at 0-2 or 253-255 (a picture whose
  optimization pushed past the displayable range loses its shading there).
- shared: a mark at a fixed place in every picture (a parameterization's artifact rather than a
  filter's feature). The mean correlation between the pictures of different filters; about 0 when
  each picture is its own.

Correlations are Pearson's over all pixels and channels, each channel first centred on its own mean, so
that a colour cast common to two pictures (or to both halves of one) does not count as likeness.
"""

from __future__ import annotations

import numpy as np

CLIP_LOW, CLIP_HIGH = 2, 253  # channel values at or beyond these count as clipped


def _centred(picture: np.ndarray) -> np.ndarray:
    """`picture` [H, W(, C)] as float64 minus each channel's mean: what is left is where things are, not
    the picture's overall colour (two pictures with the same colour cast are not alike for that)."""
    picture = np.asarray(picture, np.float64)
    if picture.ndim == 2:
        picture = picture[..., None]
    return picture - picture.mean(axis=(0, 1), keepdims=True)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two equally shaped pictures, each channel centred on its own mean (see _centred);
    0 when either is flat."""
    a, b = _centred(a).ravel(), _centred(b).ravel()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def repeat(picture: np.ndarray) -> float:
    """Correlation of `picture` [H, W(, C)] with itself shifted by half its height and width (circularly)."""
    picture = np.asarray(picture)
    height, width = picture.shape[:2]
    return _correlation(picture, np.roll(picture, (height // 2, width // 2), axis=(0, 1)))


def clipped(picture: np.ndarray) -> float:
    """Share of `picture`'s channel values at or below CLIP_LOW or at or above CLIP_HIGH."""
    picture = np.asarray(picture)
    return float(((picture <= CLIP_LOW) | (picture >= CLIP_HIGH)).mean())


def shared(pictures) -> float:
    """Mean correlation over the pairs of `pictures` (equally shaped), NaN for fewer than two."""
    pictures = [np.asarray(p) for p in pictures]
    pairs = [_correlation(pictures[i], pictures[j])
             for i in range(len(pictures)) for j in range(i + 1, len(pictures))]
    return float(np.mean(pairs)) if pairs else float("nan")
