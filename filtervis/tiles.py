"""The tile start: a filter's picture is first optimized as a half-size tile, at half the size, then
repeated 2 x 2 and finished at the output size.

A step on a half-size image costs about a quarter of a full-size one. A conv filter's mean activation
asks for a pattern of a given size in pixels, wherever it is: a tile keeps that size when repeated
(upsampling a half-size picture instead doubles it, and VGG16 block5_conv3 lost 80-95% of its
activation that way), so the repeated tile drives the filter at the output size about as much as the
tile did at half size, and the last full-size steps mend the seams and add what needs the whole
field of view. With `--steps 128`, TILE_SHARE of them run on the tile (at TILE_LR_FACTOR times --lr)
and the rest at the output size: VGG16 (--weights hed) block5_conv3 and block3_conv1 at 224 px reached
the activations of 128 full-size steps in under half the compute (README: Speed).

The tile start applies to a layer's channels rendered by their mean (`--objective channel` on a map)
when the model can run at the tile size (models.at_size); otherwise, and from --seed-image, every
step runs at the output size. Each picture still depends only on its filter's random stream: the
tile is repeated on the host, and each image is computed alone (see models.per_image).
"""

from __future__ import annotations

import dataclasses

import numpy as np


TILE_SHARE = 0.75  # the share of --steps run on the tile
TILE_LR_FACTOR = 2.0  # the tile's steps run at this times --lr (VGG16 block3_conv1 at 112 px, 96 steps:
# 1.1-1.4x the activation at --lr; block5_conv3: 1.1x)
TILE_REPEAT = 2  # the tile's sides are this many times shorter than the picture's
MIN_TILE = 8  # pixels: no tile start when a side of the tile would be shorter


def tile_size(size: tuple[int, int]) -> tuple[int, int] | None:
    """(height, width) of the tile of a picture of `size`: each side divided by TILE_REPEAT, rounded
    up (the repeated tile is cropped to the picture); None when a side would fall below MIN_TILE."""
    tile = tuple(-(-side // TILE_REPEAT) for side in size)
    return tile if min(tile) >= MIN_TILE else None


def split_steps(steps: int) -> tuple[int, int]:
    """(tile steps, output-size steps) of `steps`: TILE_SHARE of them on the tile, at least 1 at the
    output size (`steps` 1: none on the tile)."""
    tile = min(steps - 1, round(steps * TILE_SHARE))
    return tile, steps - tile


def repeat(tile: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[h, w, C] tile -> [height, width, C]: the tile repeated TILE_REPEAT x TILE_REPEAT times (more
    when needed) and cropped to `size`."""
    height, width = size
    times = (-(-height // tile.shape[0]), -(-width // tile.shape[1]), 1)
    return np.tile(tile, times)[:height, :width]


@dataclasses.dataclass(frozen=True)
class Tile:
    """A layer's tile: its cut of the model at the tile size ({layer: models.Cut}), its parameterization,
    its image shape (height, width, channels), and the steps on it and after it."""

    cuts: dict
    param: object
    shape: tuple
    steps: int
    full_steps: int

    def units(self, image_shape) -> float:
        """The work of one picture in output-size steps (a tile step counts as its share of the pixels)."""
        return self.steps * pixel_share(self.shape, image_shape) + self.full_steps


class TileStart:
    """Renders a batch as a Renderer does (`render(items, starts, progress, keys)`), through `tile` (an
    optimize.Renderer at the tile size) and then `full` (at the output size) from the repeated tiles.
    `weight` scales the tile's filter-steps for `progress` (its cost per step relative to the output
    size's). Results are the full size's, with the steps, seconds and frames of both."""

    def __init__(self, tile, full, weight: float = 1.0):
        self.tile, self.full, self.weight = tile, full, weight
        self.batch, self.image_shape = full.batch, full.image_shape

    def render(self, items, starts=None, progress=None, keys=None):
        if starts is not None:  # a start image is the picture's start at the output size
            return self.full.render(items, starts, progress=progress, keys=keys)
        tick = None if progress is None else (lambda count: progress(count * self.weight))
        first = self.tile.render(items, None, progress=tick, keys=keys)
        size = self.image_shape[:2]
        second = self.full.render(items, [repeat(r.image.astype(np.float32) / 255.0, size) for r in first],
                                  progress=progress, keys=keys)
        return [_joined(a, b, size) for a, b in zip(first, second)]


def pixel_share(tile_shape, image_shape) -> float:
    """The tile's pixels over the picture's: about what a tile step costs relative to a full-size one."""
    return tile_shape[0] * tile_shape[1] / (image_shape[0] * image_shape[1])


def _joined(tile, full, size):
    """`full` with the steps, seconds and frames (repeated to `size`) of `tile` before its own."""
    frames = tuple(repeat(frame, size) for frame in tile.frames) + full.frames
    return dataclasses.replace(full, steps=tile.steps + full.steps, seconds=tile.seconds + full.seconds,
                               frames=frames, finite=tile.finite and full.finite)
