"""numpy/Pillow only: label tiles and stitch them into a palette.

An image is uint8 [H, W, C] with C in {1, 3, 4} (grey, RGB, RGBA; H and W may differ), or float32
[H, W, C] in [0, 1] where it says so. Pillow works in modes L / RGB / RGBA; `to_pil` and `from_pil`
convert between the two, keeping the channel axis even for grey images.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_MARGIN = 4  # pixels between tiles and around the grid
MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels of a picture -> Pillow mode
TILE_MODES = {**MODES, 2: "LA"}  # and of a tile or PNG: grey with alpha too (--alpha on a grey model)
BACKGROUND = (255, 255, 255)
TEXT, OUTLINE = (255, 255, 255), (0, 0, 0)
TITLE = (0, 0, 0)
# Per mode: background, label text, label outline, title text. Opaque: an RGBA palette's background is
# opaque white. The RGB entries are the historical colours, so RGB palettes stay byte-identical.
_COLOURS = {
    "L": (255, 255, 0, 0),
    "RGB": (BACKGROUND, TEXT, OUTLINE, TITLE),
    "RGBA": (BACKGROUND + (255,), TEXT + (255,), OUTLINE + (255,), TITLE + (255,)),
    "LA": ((255, 255), (255, 255), (0, 255), (0, 255)),
}
CHECKER_LEVELS = (0.8, 0.6)  # the two greys of the checkerboard under a tile with alpha (of full scale)
CHECKER_SQUARES = 8  # squares along a tile's longer side


def mode_of(image: np.ndarray) -> str:
    """The Pillow mode of a uint8 [H, W, C] image (C 1 -> L, 2 -> LA, 3 -> RGB, 4 -> RGBA); ValueError otherwise."""
    if image.ndim != 3 or image.shape[2] not in TILE_MODES:
        raise ValueError(f"an image must be [H, W, C] with C in 1, 2, 3 or 4, but its shape was {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"an image must be uint8, but its dtype was {image.dtype}; round floats in [0, 1] to uint8 first")
    return TILE_MODES[image.shape[2]]


def to_pil(image: np.ndarray) -> Image.Image:
    """A uint8 [H, W, C] image as a Pillow image of mode L, RGB or RGBA (pixel values unchanged)."""
    mode = mode_of(image)
    return Image.fromarray(image[:, :, 0] if mode == "L" else image)


def from_pil(picture: Image.Image) -> np.ndarray:
    """An L, RGB or RGBA Pillow image as uint8 [H, W, C] (C = 1, 3, 4); grey keeps a channel axis."""
    array = np.asarray(picture)
    return array[:, :, np.newaxis] if array.ndim == 2 else array


def _font(size: int):
    return ImageFont.load_default(size=max(8, int(size)))


def _fitting_font(text: str, size: int, width: int):
    """(font, text width in pixels): the font of `size`, smaller if `text` would be wider than `width`
    pixels, down to the smallest legible size (8)."""
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    size = max(8, int(size))
    while size > 8 and draw.textlength(text, font=_font(size)) > width:
        size -= 1
    font = _font(size)
    return font, math.ceil(draw.textlength(text, font=font))


def draw_text(tile: np.ndarray, text: str) -> np.ndarray:
    """A copy of uint8 [H, W, C] `tile` with `text` in its top-left corner, white with a black outline
    (legible on any tile). In an RGBA tile the label is opaque, its anti-aliased edge blending the
    tile's alpha toward opaque."""
    image = to_pil(tile)
    _, fill, outline, _ = _COLOURS[image.mode]
    height = tile.shape[0]
    size = max(10, height // 7)
    ImageDraw.Draw(image).text((max(2, size // 4), 1), text, font=_font(size), fill=fill,
                               stroke_width=max(1, size // 10), stroke_fill=outline)
    return from_pil(image)


def _check_tiles(tiles: list[np.ndarray]) -> None:
    """ValueError unless there are tiles, all uint8 [H, W, C] of one shape."""
    if not tiles:
        raise ValueError("stitch needs at least one tile")
    mode_of(tiles[0])
    for i, tile in enumerate(tiles):
        if tile.shape != tiles[0].shape:
            raise ValueError(f"all tiles of a palette must have one shape: tile 0 is {tiles[0].shape}, "
                             f"tile {i} is {tile.shape}; render them at one size and channel count")


def stitch(tiles: list[np.ndarray], cols: int, title: str = "", margin: int = DEFAULT_MARGIN) -> np.ndarray:
    """Tiles (uint8 [H, W, C], all one shape) in a grid of `cols` columns, row by row, with `margin`
    between them and a title, on a white background: uint8 [H', W', C] of the tiles' C.

    Tiles are copied in as they are: an RGBA tile keeps its own alpha values (not composited) on an
    opaque background. ValueError when there are no tiles or their shapes differ.
    """
    _check_tiles(tiles)
    height, width = tiles[0].shape[:2]
    mode = TILE_MODES[tiles[0].shape[2]]
    background, _, _, ink = _COLOURS[mode]
    cols = min(cols, len(tiles))
    rows = -(-len(tiles) // cols)
    title_height = max(12, min(32, width // 4 + 4)) + margin if title else 0
    grid_width = cols * (width + margin) + margin
    font, title_width = _fitting_font(title, title_height - margin - 2, grid_width - 2 * margin) if title else (None, 0)
    canvas = Image.new(mode, (max(grid_width, title_width + 2 * margin),  # wider only for a title too long to fit
                              rows * (height + margin) + margin + title_height), background)
    if title:
        ImageDraw.Draw(canvas).text((margin, margin), title, font=font, fill=ink)
    for i, tile in enumerate(tiles):
        row, col = divmod(i, cols)
        canvas.paste(to_pil(tile), (margin + col * (width + margin),
                                    title_height + margin + row * (height + margin)))
    return from_pil(canvas)


def checkerboard(height: int, width: int, channels: int) -> np.ndarray:
    """uint8 [height, width, channels] grey checkerboard (CHECKER_LEVELS, CHECKER_SQUARES squares along
    the longer side): what shows through where a picture is transparent."""
    side = max(1, max(height, width) // CHECKER_SQUARES)
    y, x = np.mgrid[0:height, 0:width]
    light = ((y // side + x // side) % 2 == 0)
    level = np.where(light, CHECKER_LEVELS[0], CHECKER_LEVELS[1]) * 255.0
    return np.repeat(np.round(level).astype(np.uint8)[..., None], channels, axis=-1)


def over_checkerboard(tile: np.ndarray) -> np.ndarray:
    """A uint8 tile with alpha (LA [H, W, 2] or RGBA [H, W, 4]) composited over `checkerboard`: opaque
    L [H, W, 1] or RGB [H, W, 3]; alpha 255 keeps the pixel, 0 shows the board."""
    mode_of(tile)
    if tile.shape[2] not in (2, 4):
        raise ValueError(f"over_checkerboard needs a tile with alpha (2 or 4 channels), but it had {tile.shape[2]}")
    colour = tile[..., :-1].astype(np.float64)
    alpha = tile[..., -1:].astype(np.float64) / 255.0
    board = checkerboard(tile.shape[0], tile.shape[1], colour.shape[2]).astype(np.float64)
    return np.round(alpha * colour + (1.0 - alpha) * board).astype(np.uint8)


def palette(tiles: list[np.ndarray], labels: list[str], cols: int, title: str, checker: bool = False) -> np.ndarray:
    """The keras-vis palette: each tile labeled (`draw_text`), then stitched under a title.

    Tiles are uint8 [H, W, C] of one shape; the palette has their C: grey tiles give a grey palette,
    RGBA tiles an RGBA one (opaque white background, the tiles' own alpha). With `checker` the tiles'
    alpha (LA or RGBA, --alpha) is shown instead: each is composited over a checkerboard first, and the
    palette is opaque L or RGB. ValueError otherwise.
    """
    _check_tiles(tiles)
    if checker:
        tiles = [over_checkerboard(tile) for tile in tiles]
    return stitch([draw_text(tile, label) for tile, label in zip(tiles, labels)], cols, title)


def load_image(path: str, shape: tuple[int, int, int]) -> np.ndarray:
    """An image file as float32 [H, W, C] in [0, 1] for `shape` = (H, W, C), C in {1, 3, 4}.

    Any file Pillow reads; converted to L, RGB or RGBA by C (Pillow's conversion: an alpha channel is
    dropped, not composited, when C < 4; an image without one gets alpha 1 when C = 4) and resized to
    W x H (bicubic) when its size differs.
    """
    height, width, channels = shape
    if channels not in MODES:
        raise ValueError(f"load_image needs 1, 3 or 4 channels, but was asked for {channels}")
    with Image.open(path) as image:
        image = image.convert(MODES[channels])
        if image.size != (width, height):
            image = image.resize((width, height), Image.BICUBIC)
        return from_pil(image).astype(np.float32) / 255.0


def load_rgb(path: str, size: int) -> np.ndarray:
    """An image file as RGB floats [size, size, 3] in [0, 1]: `load_image(path, (size, size, 3))`."""
    return load_image(path, (size, size, 3))


DEFAULT_GIF_FRAME_MS = 120  # per frame of an optimization movie; the last frame is held longer
GIF_HOLD_FRAMES = 8  # the last frame lasts this many frames
GIF_PALETTE_TILE = 64  # tiles of the palette movie are at most this many pixels wide (memory, file size)


def _gif_frame(frame: np.ndarray) -> Image.Image:
    """One GIF frame: grey stays L (exact, up to 256 levels); RGBA is composited over white, since GIF
    has no real alpha; colour is quantized to 256 colours (median cut)."""
    picture = to_pil(frame)
    if picture.mode == "L":
        return picture
    if picture.mode == "RGBA":
        white = Image.new("RGBA", picture.size, _COLOURS["RGBA"][0])
        picture = Image.alpha_composite(white, picture).convert("RGB")
    return picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def gif_bytes(frames: list[np.ndarray], frame_ms: int = DEFAULT_GIF_FRAME_MS) -> bytes:
    """An endlessly looping GIF of uint8 [H, W, C] frames, `frame_ms` each, the last one held longer.

    Grey frames (C = 1) stay grey; RGBA frames (C = 4) become RGB composited over white (GIF has no
    real alpha); RGB frames are quantized to 256 colours.
    """
    import io

    if not frames:
        raise ValueError("gif_bytes needs at least one frame")
    pictures = [_gif_frame(frame) for frame in frames]
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * GIF_HOLD_FRAMES]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations,
                     loop=0, disposal=1)
    return buffer.getvalue()


def shrink(tile: np.ndarray, width: int = GIF_PALETTE_TILE) -> np.ndarray:
    """uint8 [H, W, C] `tile` scaled down to at most `width` pixels wide (aspect kept, bilinear; Pillow
    weights RGBA colours by alpha), unchanged when already small."""
    if tile.shape[1] <= width:
        return tile
    height = max(1, round(tile.shape[0] * width / tile.shape[1]))
    return from_pil(to_pil(tile).resize((width, height), Image.BILINEAR))


def palette_movie(movies: list[list[np.ndarray]], labels: list[str], cols: int, title: str) -> list[np.ndarray]:
    """Frames of the palette over the steps: frame k stitches frame k of every filter's movie
    (a shorter movie holds its last frame). All frames uint8 [H, W, C] of one shape, as for `palette`."""
    length = max(len(movie) for movie in movies)
    return [palette([movie[min(k, len(movie) - 1)] for movie in movies], labels, cols, title) for k in range(length)]
