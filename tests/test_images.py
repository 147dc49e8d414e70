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
