"""Natural-looking start images that need no data set: numpy only, deterministic from a seed.

A filter that noise and a near-grey start leave silent passes no gradient through the ReLUs in front
of it, so the optimizer cannot find what it wants; a start that already drives it (a flat bright field,
an edge, a grating of the right frequency and colours, a colour blob) gives it one. `bank` makes a few dozen such images
to be tried in one batched forward pass; `rescue.Rescuer` starts a silent filter from its best one.

Every image is float32 [height, width, channels] in [0, 1]. Channels are independent values (1: grey,
3: RGB, 4: RGBA or RGB + another band); colours are drawn per channel, so any channel count works.
"""

from __future__ import annotations

import numpy as np

GRATING_PERIODS = (4, 8, 16, 32)  # pixels per cycle: the fine detail early layers want, up to coarse stripes
ORIENTATIONS = 4  # grating orientations, evenly spaced over 180 degrees (edges: both polarities, 360)
FLAT_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)  # grey levels of the flat starts
BANK_TEXTURES = 4  # of each random texture (blobs, 1/f noise, dead leaves, uniform noise) in a bank


def _check(height: int, width: int, channels: int) -> None:
    if height < 1 or width < 1 or channels < 1:
        raise ValueError(f"height, width and channels must be 1 or more, but were {height}, {width}, {channels}")


def _coordinates(height: int, width: int, angle: float) -> np.ndarray:
    """[height, width] distance in pixels of each pixel from the image centre along direction `angle`
    (radians; 0 points right, pi/2 down)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return (x - (width - 1) / 2) * np.cos(angle) + (y - (height - 1) / 2) * np.sin(angle)


def _blend(mask: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """mask [H, W] in [0, 1] -> [H, W, C] float32: `low` where 0, `high` where 1."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return (low + mask[..., None] * (high - low)).astype(np.float32)


def flat(height: int, width: int, channels: int, colour) -> np.ndarray:
    """One colour everywhere (a scalar or [channels] in [0, 1]): sky, paper, a wall. Some filters fire
    only on such flat fields, and texture of any kind silences them."""
    _check(height, width, channels)
    return np.broadcast_to(np.asarray(colour, np.float32), (height, width, channels)).copy()


def flat_colours(channels: int) -> list[np.ndarray]:
    """[channels] colours of the flat starts: greys 0, 0.25, ..., 1, and with more than one channel each
    channel alone on (red, green, blue) and alone off (cyan, magenta, yellow)."""
    colours = [np.full(channels, level, np.float32) for level in FLAT_LEVELS]
    if channels > 1:
        for c in range(channels):
            colours.append(np.eye(channels, dtype=np.float32)[c])
            colours.append(1 - np.eye(channels, dtype=np.float32)[c])
    return colours


def grating(height: int, width: int, channels: int, period: float, angle: float, phase: float = 0.0,
            low=0.0, high=1.0, square: bool = False) -> np.ndarray:
    """Stripes varying along `angle` (radians) with `period` pixels per cycle, from colour `low` to
    `high` (scalars or [channels] in [0, 1]); sinusoidal, or sharp-edged with `square`."""
    _check(height, width, channels)
    wave = np.cos(2 * np.pi * _coordinates(height, width, angle) / period + phase)
    mask = (wave > 0).astype(np.float64) if square else (wave + 1) / 2
    return np.broadcast_to(_blend(mask, low, high), (height, width, channels)).copy()


def edge(height: int, width: int, channels: int, angle: float, low=0.0, high=1.0, offset: float = 0.0) -> np.ndarray:
    """One straight step edge through the centre (shifted `offset` px along `angle`): colour `low`
    behind it, `high` in front (towards `angle`)."""
    _check(height, width, channels)
    mask = (_coordinates(height, width, angle) > offset).astype(np.float64)
    return np.broadcast_to(_blend(mask, low, high), (height, width, channels)).copy()


def blobs(rng: np.random.Generator, height: int, width: int, channels: int, count: int = 6) -> np.ndarray:
    """`count` soft Gaussian blobs of random colours and sizes (a tenth to a third of the short side)
    over a random background colour."""
    _check(height, width, channels)
    image = np.broadcast_to(rng.uniform(0, 1, channels), (height, width, channels)).astype(np.float64)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    short = min(height, width)
    for _ in range(count):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        sigma = rng.uniform(0.1, 0.33) * short
        weight = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma * sigma))[..., None]
        image = image + weight * (rng.uniform(0, 1, channels) - image)
    return image.astype(np.float32)


def pink_noise(rng: np.random.Generator, height: int, width: int, channels: int, decay: float = 1.0) -> np.ndarray:
    """Noise with a 1/frequency^`decay` amplitude spectrum (the falloff of natural images), its channels
    sharing most of one pattern (as a photo's colours share luminance), stretched to fill [0, 1]."""
    _check(height, width, channels)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    gain = 1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(height, width)) ** decay

    def field():
        spectrum = (rng.standard_normal(gain.shape) + 1j * rng.standard_normal(gain.shape)) * gain
        return np.fft.irfft2(spectrum, s=(height, width))

    shared = field()
    image = np.stack([shared + 0.5 * field() for _ in range(channels)], axis=-1)
    low, high = image.min(), image.max()
    return ((image - low) / max(high - low, 1e-12)).astype(np.float32)


def dead_leaves(rng: np.random.Generator, height: int, width: int, channels: int, count: int = 64) -> np.ndarray:
    """The dead-leaves model of natural images: `count` opaque discs of random colours, radii spread
    as 1/r^3 from 1/50 to 1/3 of the short side, dropped one over another (edges and flat regions at
    every scale)."""
    _check(height, width, channels)
    image = np.broadcast_to(rng.uniform(0, 1, channels), (height, width, channels)).astype(np.float32).copy()
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    short = min(height, width)
    r_min, r_max = max(short / 50, 1.0), max(short / 3, 1.0)
    for _ in range(count):
        # inverse CDF of a density proportional to r^-3 on [r_min, r_max]
        u = rng.uniform()
        radius = 1.0 / np.sqrt(1.0 / r_min ** 2 - u * (1.0 / r_min ** 2 - 1.0 / r_max ** 2))
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        image[(y - cy) ** 2 + (x - cx) ** 2 <= radius * radius] = rng.uniform(0, 1, channels)
    return image


def uniform_noise(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """Every value uniform in [0, 1] on its own."""
    _check(height, width, channels)
    return rng.uniform(0, 1, (height, width, channels)).astype(np.float32)


def bank(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """[N, height, width, channels] float32 start images in [0, 1], the same for the same arguments:

    - flat fields of the `flat_colours` and BANK_TEXTURES random colours;
    - gratings: ORIENTATIONS x GRATING_PERIODS, each black-white (sinusoidal) and between two random
      colours (sharp-edged);
    - edges: 2 x ORIENTATIONS directions (both polarities), each between two random colours;
    - BANK_TEXTURES each of colour blobs, 1/f noise, dead leaves and uniform noise.
    """
    _check(height, width, channels)
    rng = np.random.default_rng([seed, 0x5747])

    def colour():
        return rng.uniform(0, 1, channels)

    images = [flat(height, width, channels, c) for c in flat_colours(channels)]
    images.extend(flat(height, width, channels, colour()) for _ in range(BANK_TEXTURES))
    for k in range(ORIENTATIONS):
        angle = np.pi * k / ORIENTATIONS
        for period in GRATING_PERIODS:
            images.append(grating(height, width, channels, period, angle))
            images.append(grating(height, width, channels, period, angle, rng.uniform(0, 2 * np.pi),
                                  colour(), colour(), square=True))
    for k in range(2 * ORIENTATIONS):
        images.append(edge(height, width, channels, np.pi * k / ORIENTATIONS, colour(), colour()))
    for make in (blobs, pink_noise, dead_leaves, uniform_noise):
        images.extend(make(rng, height, width, channels) for _ in range(BANK_TEXTURES))
    return np.stack(images)
