"""numpy/Pillow only: label tiles and stitch them into a palette. Images are uint8 [H, W, 3]."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_MARGIN = 4  # pixels between tiles and around the grid
BACKGROUND = (255, 255, 255)
TEXT, OUTLINE = (255, 255, 255), (0, 0, 0)


def _font(size: int):
    return ImageFont.load_default(size=max(8, int(size)))


def draw_text(tile: np.ndarray, text: str) -> np.ndarray:
    """A copy of `tile` with `text` in its top-left corner, white with a black outline (legible on any tile)."""
    image = Image.fromarray(tile)
    height = tile.shape[0]
    size = max(10, height // 7)
    ImageDraw.Draw(image).text((max(2, size // 4), 1), text, font=_font(size), fill=TEXT,
                               stroke_width=max(1, size // 10), stroke_fill=OUTLINE)
    return np.asarray(image)


def stitch(tiles: list[np.ndarray], cols: int, title: str = "", margin: int = DEFAULT_MARGIN) -> np.ndarray:
    """Tiles (all one shape) in a grid of `cols` columns, row by row, with `margin` between them and a title."""
    if not tiles:
        raise ValueError("stitch needs at least one tile")
    height, width = tiles[0].shape[:2]
    cols = min(cols, len(tiles))
    rows = -(-len(tiles) // cols)
    title_height = max(12, min(32, width // 4 + 4)) + margin if title else 0
    canvas = Image.new("RGB", (cols * (width + margin) + margin,
                               rows * (height + margin) + margin + title_height), BACKGROUND)
    if title:
        ImageDraw.Draw(canvas).text((margin, margin), title, font=_font(title_height - margin - 2), fill=(0, 0, 0))
    for i, tile in enumerate(tiles):
        row, col = divmod(i, cols)
        canvas.paste(Image.fromarray(tile), (margin + col * (width + margin),
                                             title_height + margin + row * (height + margin)))
    return np.asarray(canvas)


def palette(tiles: list[np.ndarray], labels: list[str], cols: int, title: str) -> np.ndarray:
    """The keras-vis palette: each tile labeled (`draw_text`), then stitched under a title."""
    return stitch([draw_text(tile, label) for tile, label in zip(tiles, labels)], cols, title)


def load_rgb(path: str, size: int) -> np.ndarray:
    """An image file as RGB floats in [0, 1], resized to `size` x `size` (bicubic) when needed."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BICUBIC)
        return np.asarray(image, dtype=np.float32) / 255.0
