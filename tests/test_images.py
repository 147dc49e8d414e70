import numpy as np
import pytest
from PIL import Image

from filtervis import images


def test_stitch_places_tiles_in_a_grid_with_margins():
    tiles = [np.full((4, 5, 3), v, np.uint8) for v in (10, 20, 30)]
    grid = images.stitch(tiles, cols=2, margin=1)
    assert grid.shape == (2 * 5 + 1, 2 * 6 + 1, 3)
    assert (grid[1:5, 1:6] == 10).all() and (grid[1:5, 7:12] == 20).all() and (grid[6:10, 1:6] == 30).all()
    assert (grid[6:10, 7:12] == 255).all() and (grid[0] == 255).all()


def test_stitch_title_adds_a_band_with_text():
    tiles = [np.zeros((32, 32, 3), np.uint8)] * 3
    plain, titled = images.stitch(tiles, cols=3), images.stitch(tiles, cols=3, title="block1_conv2")
    assert titled.shape[0] > plain.shape[0] and titled.shape[1] == plain.shape[1]
    band = titled[: titled.shape[0] - plain.shape[0]]
    assert (band < 128).any()  # dark title text on white


@pytest.mark.parametrize("cols, size", [(2, 64), (1, 48), (3, 32)])
def test_a_long_title_shrinks_to_fit_a_narrow_palette(cols, size):
    """The whole title stays on the canvas (fer's layers in 2 columns of 64 px used to lose their end):
    smaller type, and a wider canvas (tiles where they were) where even the smallest does not fit."""
    tiles = [np.full((size, size, 3), 200, np.uint8)] * cols
    plain = images.stitch(tiles, cols=cols)
    titled = images.stitch(tiles, cols=cols, title="separable_conv2d_6")
    band = titled[: titled.shape[0] - plain.shape[0]]
    ink = np.argwhere((band < 128).any(axis=2))
    assert len(ink) > 20
    assert ink[:, 1].max() < titled.shape[1] - images.DEFAULT_MARGIN  # ends inside the right margin
    np.testing.assert_array_equal(titled[band.shape[0]:, :plain.shape[1]], plain)  # the grid as it was


def test_draw_text_marks_only_the_corner():
    tile = np.full((64, 64, 3), 128, np.uint8)
    labeled = images.draw_text(tile, "7")
    changed = np.argwhere((labeled != tile).any(axis=2))
    assert len(changed) > 10 and changed[:, 0].max() < 32 and changed[:, 1].max() < 32


def test_palette_labels_every_tile():
    tiles = [np.full((48, 48, 3), 128, np.uint8) for _ in range(4)]
    grid = images.palette(tiles, ["0", "1", "2", "3"], cols=4, title="")
    for col in range(4):
        x = images.DEFAULT_MARGIN + col * (48 + images.DEFAULT_MARGIN)
        assert (grid[images.DEFAULT_MARGIN:images.DEFAULT_MARGIN + 16, x:x + 16] != 128).any()


def test_stitch_needs_tiles():
    with pytest.raises(ValueError):
        images.stitch([], cols=2)


def test_load_rgb_converts_and_resizes(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((10, 20), 255, np.uint8), mode="L").save(path)
    loaded = images.load_rgb(str(path), 8)
    assert loaded.shape == (8, 8, 3) and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, 1.0)


# --- 1, 3 or 4 channels, non-square tiles -------------------------------------------------------

def _grey_tiles(n, height=30, width=50, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 1), dtype=np.uint8) for _ in range(n)]


def test_stitch_places_non_square_grey_tiles_in_a_grey_grid():
    tiles = [np.full((3, 5, 1), v, np.uint8) for v in (10, 20, 30)]
    grid = images.stitch(tiles, cols=2, margin=1)
    assert grid.shape == (2 * 4 + 1, 2 * 6 + 1, 1) and grid.dtype == np.uint8
    assert (grid[1:4, 1:6] == 10).all() and (grid[1:4, 7:12] == 20).all() and (grid[5:8, 1:6] == 30).all()
    assert (grid[5:8, 7:12] == 255).all() and (grid[0] == 255).all() and (grid[:, 6] == 255).all()


def test_palette_of_grey_tiles_is_grey_with_the_tiles_in_place():
    tiles = _grey_tiles(3)
    grid = images.palette(tiles, ["0", "1", "2"], cols=2, title="")
    m = images.DEFAULT_MARGIN
    assert grid.shape == (2 * (30 + m) + m, 2 * (50 + m) + m, 1)
    for i, tile in enumerate(tiles):
        row, col = divmod(i, 2)
        y, x = m + row * (30 + m), m + col * (50 + m)
        placed = grid[y:y + 30, x:x + 50]
        np.testing.assert_array_equal(placed[16:], tile[16:])  # below the label: the tile itself
        changed = placed[:16, :16][placed[:16, :16] != tile[:16, :16]]
        assert changed.max() > 200 and changed.min() < 50  # a label: white text, black outline
    assert (grid[:m] == 255).all() and (grid[-(30 + m):, -(50 + m):] == 255).all()  # background, empty cell


def test_grey_palette_matches_the_rgb_palette_of_the_same_grey_tiles():
    tiles = _grey_tiles(5, height=24, width=40)
    labels = [str(i) for i in range(5)]
    grey = images.palette(tiles, labels, cols=3, title="block1_conv1")
    rgb = images.palette([np.repeat(t, 3, axis=2) for t in tiles], labels, cols=3, title="block1_conv1")
    assert grey.shape[2] == 1 and rgb.shape[2] == 3
    np.testing.assert_array_equal(np.repeat(grey, 3, axis=2), rgb)


def test_rgba_palette_keeps_the_tile_alpha_on_an_opaque_background():
    rng = np.random.default_rng(2)
    tiles = [np.dstack([rng.integers(0, 256, (20, 36, 3), dtype=np.uint8), np.full((20, 36), a, np.uint8)])
             for a in (0, 77, 200)]
    grid = images.palette(tiles, ["0", "1", "2"], cols=3, title="t")
    rgb = images.palette([t[:, :, :3] for t in tiles], ["0", "1", "2"], cols=3, title="t")
    assert grid.shape == rgb.shape[:2] + (4,)
    m = images.DEFAULT_MARGIN
    top = grid.shape[0] - 20 - m
    labels = np.zeros(grid.shape[:2], bool)
    for i, tile in enumerate(tiles):
        x = m + i * (36 + m)
        np.testing.assert_array_equal(grid[top + 12:top + 20, x:x + 36], tile[12:])  # values copied, alpha too
        assert (grid[top:top + 12, x:x + 12, 3] == 255).any()  # the label is opaque
        labels[top:top + 12, x:x + 12] = True
    np.testing.assert_array_equal(grid[~labels][:, :3], rgb[~labels])  # title, background as in RGB
    assert (grid[:top - m, :, 3] == 255).all() and (grid[:, :m, 3] == 255).all()  # opaque background


def test_palette_refuses_tiles_of_different_shapes():
    with pytest.raises(ValueError, match="one shape.*tile 1"):
        images.palette([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], ["0", "1"], 2, "")
    with pytest.raises(ValueError, match="one shape"):
        images.stitch([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 4), np.uint8)], 2)
    with pytest.raises(ValueError, match="C in 1, 2, 3 or 4"):
        images.palette([np.zeros((8, 8, 5), np.uint8)], ["0"], 1, "")


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_draw_text_keeps_shape_and_marks_only_the_corner(channels):
    tile = np.full((40, 72, channels), 128, np.uint8)
    labeled = images.draw_text(tile, "7")
    assert labeled.shape == tile.shape and labeled.dtype == np.uint8
    changed = np.argwhere((labeled != tile).any(axis=2))
    assert len(changed) > 10 and changed[:, 0].max() < 20 and changed[:, 1].max() < 20


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_shrink_keeps_channels_and_aspect(channels):
    tile = np.full((50, 200, channels), 90, np.uint8)
    small = images.shrink(tile, 40)
    assert small.shape == (10, 40, channels)
    np.testing.assert_array_equal(small, 90)
    assert images.shrink(tile, 200) is tile


def _gif_frames(data: bytes) -> list[np.ndarray]:
    import io

    from PIL import ImageSequence

    with Image.open(io.BytesIO(data)) as gif:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]


def test_gif_of_grey_frames_decodes_grey_and_exact():
    frames = [np.arange(60, dtype=np.uint8).reshape(6, 10, 1) * 4, np.full((6, 10, 1), 33, np.uint8)]
    decoded = _gif_frames(images.gif_bytes(frames))
    assert len(decoded) == 2
    for got, frame in zip(decoded, frames):
        assert got.shape == (6, 10, 3)
        np.testing.assert_array_equal(got, np.repeat(frame, 3, axis=2))  # R = G = B = the grey value


def test_gif_of_rgba_frames_is_composited_over_white():
    clear = np.zeros((4, 6, 4), np.uint8)  # fully transparent black
    red = np.zeros((4, 6, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 255
    half = np.zeros((4, 6, 4), np.uint8)
    half[..., 3] = 128  # black at half opacity over white: grey
    decoded = _gif_frames(images.gif_bytes([clear, red, half]))
    np.testing.assert_array_equal(decoded[0], 255)
    np.testing.assert_array_equal(decoded[1], np.broadcast_to([255, 0, 0], (4, 6, 3)))
    assert (np.abs(decoded[2].astype(int) - 127) <= 1).all()


def test_load_image_converts_modes_and_resizes_non_square(tmp_path):
    path = tmp_path / "rgba.png"
    pixels = np.zeros((10, 20, 4), np.uint8)
    pixels[:, :10] = (255, 0, 0, 255)  # left half opaque red
    pixels[:, 10:] = (0, 0, 255, 100)  # right half translucent blue
    Image.fromarray(pixels).save(path)
    rgba = images.load_image(str(path), (6, 16, 4))
    assert rgba.shape == (6, 16, 4) and rgba.dtype == np.float32
    np.testing.assert_allclose(rgba[:, 0], [[1, 0, 0, 1]] * 6, atol=1e-6)
    np.testing.assert_allclose(rgba[:, -1], [[0, 0, 1, 100 / 255]] * 6, atol=1e-6)
    grey = images.load_image(str(path), (10, 20, 1))  # same size: no resize
    assert grey.shape == (10, 20, 1)
    np.testing.assert_allclose(grey[0, 0, 0], 76 / 255, atol=1e-6)  # ITU-R 601 luma of red, alpha dropped
    np.testing.assert_allclose(grey[0, -1, 0], 29 / 255, atol=1e-6)
    rgb = images.load_image(str(path), (12, 5, 3))
    assert rgb.shape == (12, 5, 3) and 0.0 <= rgb.min() and rgb.max() <= 1.0


def test_load_image_gives_opaque_alpha_to_an_image_without_one(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((7, 3), 51, np.uint8), mode="L").save(path)
    loaded = images.load_image(str(path), (7, 3, 4))
    np.testing.assert_allclose(loaded, np.broadcast_to([0.2, 0.2, 0.2, 1.0], (7, 3, 4)), atol=1e-6)
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        images.load_image(str(path), (7, 3, 2))


def test_over_checkerboard_composites_alpha_exactly():
    tile = np.zeros((16, 16, 4), np.uint8)
    tile[..., :3] = (200, 10, 100)
    tile[:8, :, 3] = 255  # top half opaque, bottom half transparent
    tile[8:, :8, 3] = 0
    tile[8:, 8:, 3] = 51  # a fifth
    out = images.over_checkerboard(tile)
    board = images.checkerboard(16, 16, 3)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out[:8] == (200, 10, 100)).all()
    np.testing.assert_array_equal(out[8:, :8], board[8:, :8])
    expected = np.round(0.2 * np.array([200, 10, 100]) + 0.8 * board[8:, 8:].astype(float)).astype(np.uint8)
    np.testing.assert_array_equal(out[8:, 8:], expected)
    assert len(np.unique(board)) == 2  # two greys
    grey = images.over_checkerboard(np.dstack([np.full((6, 4), 9, np.uint8), np.zeros((6, 4), np.uint8)]))
    assert grey.shape == (6, 4, 1) and (grey == images.checkerboard(6, 4, 1)).all()
    with pytest.raises(ValueError, match="alpha"):
        images.over_checkerboard(np.zeros((4, 4, 3), np.uint8))


def test_palette_with_checker_shows_the_tiles_over_the_board():
    tiles = [np.dstack([np.full((24, 24, 3), 255, np.uint8), np.zeros((24, 24, 1), np.uint8)])] * 2
    plain = images.palette(tiles, ["0", "1"], 2, "t")
    shown = images.palette(tiles, ["0", "1"], 2, "t", checker=True)
    assert plain.shape[2] == 4 and shown.shape[2] == 3
    assert shown.shape[:2] == plain.shape[:2]
    assert set(np.unique(shown[-12:-5, 14:26, 0])) == {153, 204}  # the board shows through the clear tile
