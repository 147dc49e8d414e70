"""Print the natural-image amplitude spectrum that `--param maco` keeps fixed (params.NATURAL_SPECTRUM).

    PYTHONPATH=. python benchmarks/natural_spectrum.py

The photos are scikit-image's bundled ones (offline; benchmarks/quality.py's PHOTOS). Each is cut into
crops of 64, 128 and 256 px (from the photo scaled so its short side is 1, 2 and 4 crops), each crop's
pixels in [0, 1] are centred on their mean and, for colour, turned into the decorrelated colour directions
of params.COLOR_MIX; then the unitary amplitude |rfft2| / sqrt(H W) of every coefficient is binned by its
frequency (cycles per pixel, SPECTRUM_BINS edges) and each bin keeps the root mean square. For a
scale-invariant image that amplitude depends on the frequency alone, not on the crop size (the crop sizes
agree to within a few percent; the table is their mean). `dc` is the spread of the crops' mean colour
in the same directions (the mean of a picture may move that much). Grey is the photos' luminance
(Pillow's L).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import PHOTOS  # noqa: E402

CROPS = (64, 128, 256)


def photos():
    import skimage.data

    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        photo = photo[0] if isinstance(photo, tuple) else photo
        photo = np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo[..., :3]
        yield photo


def crops(photo, size):
    from PIL import Image

    for short in (size, 2 * size, 4 * size):
        h, w = photo.shape[:2]
        factor = short / min(h, w)
        if factor > 1.5:
            continue  # not upscaled much: that would starve the high frequencies
        scaled = np.asarray(Image.fromarray(photo).resize((round(w * factor), round(h * factor)), Image.BICUBIC))
        for y in range(0, scaled.shape[0] - size + 1, size):
            for x in range(0, scaled.shape[1] - size + 1, size):
                yield scaled[y:y + size, x:x + size]


def main():
    from PIL import Image

    from filtervis.params import COLOR_MIX, SPECTRUM_BINS

    unmix = np.linalg.inv(COLOR_MIX.astype(np.float64)).T
    edges = np.asarray(SPECTRUM_BINS)
    tables = {}
    for size in CROPS:
        power = {"colour": np.zeros((3, len(edges) - 1)), "grey": np.zeros((1, len(edges) - 1))}
        counts = np.zeros(len(edges) - 1)
        means = {"colour": [], "grey": []}
        f = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2)
        which = np.digitize(f, edges) - 1
        for photo in photos():
            for crop in crops(photo, size):
                rgb = crop.astype(np.float64) / 255.0
                grey = np.asarray(Image.fromarray(crop).convert("L"), np.float64)[..., None] / 255.0
                for kind, pixels in (("colour", rgb @ unmix), ("grey", grey)):
                    means[kind].append(pixels.mean(axis=(0, 1)))
                    planes = np.transpose(pixels - pixels.mean(axis=(0, 1)), (2, 0, 1))
                    amplitude2 = np.abs(np.fft.rfft2(planes)) ** 2 / (size * size)
                    for b in range(len(edges) - 1):
                        power[kind][:, b] += amplitude2[:, which == b].sum(axis=1)
                counts += np.bincount(which[which >= 0].ravel(), minlength=len(edges) - 1)[:len(edges) - 1]
        n = len(means["grey"])
        tables[size] = {kind: np.sqrt(power[kind] / np.maximum(counts, 1)) * (counts > 0) for kind in power}
        tables[size]["dc"] = {kind: np.std(np.array(means[kind]), axis=0) for kind in means}
        print(f"# {size} px: {n} crops", file=sys.stderr)
    for kind in ("colour", "grey"):
        rows = np.array([tables[s][kind] for s in CROPS])  # [sizes, channels, bins]
        filled = np.where(rows > 0, rows, np.nan)
        mean = np.nanmean(filled, axis=0)
        print(f"{kind}: spread across crop sizes (max/min per bin) "
              f"{np.nanmax(filled / np.nanmin(filled, axis=0), axis=0).max(axis=0).round(2).tolist()}", file=sys.stderr)
        print(f"{kind} = {np.round(mean, 5).tolist()}")
        print(f"{kind}_dc = {np.round(np.mean([tables[s]['dc'][kind] for s in CROPS], axis=0), 4).tolist()}")


if __name__ == "__main__":
    main()
