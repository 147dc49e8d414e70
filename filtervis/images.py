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


DEFAULT_GIF_FRAME_MS = 120  # per frame of an optimization movie; the last frame is held longer
GIF_HOLD_FRAMES = 8  # the last frame lasts this many frames
GIF_PALETTE_TILE = 64  # tiles of the palette movie are at most this many pixels wide (memory, file size)


def gif_bytes(frames: list[np.ndarray], frame_ms: int = DEFAULT_GIF_FRAME_MS) -> bytes:
    """An endlessly looping GIF of uint8 [H, W, 3] frames, `frame_ms` each, the last one held longer."""
    import io

    if not frames:
        raise ValueError("gif_bytes needs at least one frame")
    pictures = [Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.MEDIANCUT) for frame in frames]
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * GIF_HOLD_FRAMES]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations,
                     loop=0, disposal=1)
    return buffer.getvalue()


def shrink(tile: np.ndarray, width: int = GIF_PALETTE_TILE) -> np.ndarray:
    """`tile` scaled down to at most `width` pixels wide (aspect kept), unchanged when already small."""
    if tile.shape[1] <= width:
        return tile
    height = max(1, round(tile.shape[0] * width / tile.shape[1]))
    return np.asarray(Image.fromarray(tile).resize((width, height), Image.BILINEAR))


def palette_movie(movies: list[list[np.ndarray]], labels: list[str], cols: int, title: str) -> list[np.ndarray]:
    """Frames of the palette over the steps: frame k stitches frame k of every filter's movie
    (a shorter movie holds its last frame)."""
    length = max(len(movie) for movie in movies)
    return [palette([movie[min(k, len(movie) - 1)] for movie in movies], labels, cols, title) for k in range(length)]
