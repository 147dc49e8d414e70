"""The tile start (tiles.py): the split of --steps, the repeated tile, models at the tile size, and
renders that go through the tile (or, where it cannot apply, do not)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from filtervis import api, models, tiles


def any_size_model():
    """Input(any size, 3) -> conv(4, relu) 'conv1' -> conv(6, relu) 'conv2' -> GAP."""
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="anysize")


@pytest.mark.parametrize("steps, expected", [(128, (96, 32)), (64, (48, 16)), (8, (6, 2)), (2, (1, 1)),
                                             (1, (0, 1))])
def test_split_steps_gives_three_quarters_to_the_tile_and_keeps_one_full_step(steps, expected):
    assert tiles.split_steps(steps) == expected


@pytest.mark.parametrize("size, expected", [((224, 224), (112, 112)), ((97, 64), (49, 32)), ((16, 40), (8, 20)),
                                            ((14, 64), None)])
def test_tile_size_halves_rounding_up_and_refuses_below_the_smallest_image(size, expected):
    assert tiles.tile_size(size) == expected


def test_repeat_tiles_two_by_two_and_crops_to_the_picture():
    tile = np.arange(3 * 2 * 1, dtype=np.float32).reshape(3, 2, 1)
    picture = tiles.repeat(tile, (5, 4))
    assert picture.shape == (5, 4, 1)
    assert np.array_equal(picture[:3, :2], tile) and np.array_equal(picture[:3, 2:], tile)
    assert np.array_equal(picture[3:5, :2], tile[:2])


def test_a_model_that_takes_any_size_is_used_as_it_is_at_the_tile_size():
    loaded = models.describe(any_size_model(), size=24, preprocess="tf")
    small = models.at_size(loaded, (12, 12))
    assert small.model is loaded.model and small.size == (12, 12)


def test_an_application_is_rebuilt_at_the_tile_size_with_the_same_weights():
    loaded = models.load("vgg16", "none", "caffe", size=64)
    for layer in loaded.model.layers:  # weights that the rebuild must carry over (not fresh initial ones)
        if layer.weights:
            layer.set_weights([w + 0.5 for w in layer.get_weights()])
    small = models.at_size(loaded, (32, 32))
    assert small is not None and small.size == (32, 32) and small.model is not loaded.model
    for mine, theirs in zip(small.model.layers, loaded.model.layers):
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_a_fixed_size_model_is_not_rebuilt(tiny_model):
    loaded = models.describe(tiny_model, preprocess="tf")  # Input(16, 16, 3), not an application
    assert models.at_size(loaded, (8, 8)) is None


def test_the_tile_start_renders_a_tile_then_the_picture_and_counts_both():
    model = any_size_model()
    result = api.render(model, "conv2", filters="0-3", size=24, steps=16, preprocess="tf", tile=True)
    plan = result.plan
    assert plan.tile_note() == {"size": 12, "steps": 12, "lr_factor": tiles.TILE_LR_FACTOR}
    assert [r.steps for r in result.filters] == [16] * 4  # 12 on the tile, 4 at 24 px
    assert all(image.shape == (24, 24, 3) for image in result.images)
    untiled = api.render(model, "conv2", filters="0-3", size=24, steps=16, preprocess="tf")  # the default
    assert untiled.plan.tile_note() is None
    assert any(not np.array_equal(a, b) for a, b in zip(result.images, untiled.images))
    # the tile steps cost a quarter each: 12 / 4 + 4 output-size steps of work per picture
    assert plan.step_units() == pytest.approx(12 * 0.25 + 4)


def test_tiled_pictures_do_not_depend_on_the_batch():
    model = any_size_model()
    one = api.render(model, "conv2", filters="0-5", size=20, steps=8, preprocess="tf", batch=1, tile=True)
    six = api.render(model, "conv2", filters="0-5", size=20, steps=8, preprocess="tf", batch=6, tile=True)
    assert one.plan.tile_note() is not None
    for a, b in zip(one.images, six.images):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("options", [{"objective": "neuron", "tile": True}, {}, {"param": "maco", "tile": True}])
def test_the_tile_is_skipped_where_it_does_not_apply(options):
    """The centre unit of a map is not a mean over it; without --tile (the default) there is none; maco's
    fixed amplitudes cannot hold a repeated tile (params.UNTILED)."""
    plan = api.prepare(any_size_model(), "conv2", "0-1", size=24, steps=8, preprocess="tf", **options)
    assert plan.tile is None and plan.step_units() == 8


def test_a_seed_image_starts_at_the_output_size(tmp_path):
    from PIL import Image

    seed = tmp_path / "seed.png"
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(seed)
    plan = api.prepare(any_size_model(), "conv2", "0-1", size=24, steps=8, preprocess="tf", seed_image=str(seed),
                      tile=True)
    assert plan.tile is None


def test_the_cli_writes_the_tile_in_the_manifest_and_it_is_off_by_default(tmp_path):
    path = tmp_path / "anysize.keras"
    any_size_model().save(path)
    for flag, expected in ((("--tile",), {"size": 12, "steps": 6, "lr_factor": tiles.TILE_LR_FACTOR}), ((), None)):
        out = tmp_path / f"out{len(flag)}"
        done = run_cli("run", "--model", path, "--layer", "conv2", "--filters", "0-1", "--size", 24, "--steps", 8,
                       "--preprocess", "tf", "--quiet", "--out", out, *flag)
        assert done.returncode == 0, done.stderr
        manifest = json.loads((out / "conv2" / "manifest.json").read_text())
        assert manifest["tile"] == expected and manifest["params"]["tile"] is bool(flag)
        assert [f["steps"] for f in manifest["filters"]] == [8, 8]


def test_a_sequential_model_whose_cut_takes_one_size_is_not_tiled():
    """A Sequential model may run at another size while its cut, built for its input, does not."""
    import keras

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="conv1"),
                              keras.layers.GlobalAveragePooling2D()])
    result = api.render(model, "conv1", filters="0-1", steps=4, preprocess="tf", tile=True)
    assert result.plan.tile is None and len(result.images) == 2


def test_tile_and_seed_image_give_the_same_pictures_through_the_cli_and_render(tmp_path):
    """A seed image is a start at the output size: the plan leaves the tile start out, for the command
    line as for render, and the pictures are the same byte for byte."""
    from PIL import Image

    seed = tmp_path / "seed.png"
    Image.fromarray(np.linspace(0, 255, 24 * 24 * 3).reshape(24, 24, 3).astype(np.uint8)).save(seed)
    path = tmp_path / "anysize.keras"
    any_size_model().save(path)
    done = run_cli("run", "--model", path, "--layer", "conv2", "--filters", "0-2", "--size", 24, "--steps", 8,
                   "--preprocess", "tf", "--quiet", "--no-report", "--tile", "--seed-image", seed, "--out",
                   tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "conv2" / "manifest.json").read_text())["tile"] is None
    result = api.render(str(path), "conv2", filters="0-2", size=24, steps=8, preprocess="tf", tile=True,
                        seed_image=str(seed))
    for index, image in enumerate(result.images):
        on_disk = np.asarray(Image.open(tmp_path / "out" / "conv2" / f"filter_{index:04d}.png"))
        np.testing.assert_array_equal(on_disk, image)
