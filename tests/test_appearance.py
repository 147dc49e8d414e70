"""The picture measures a person would check: repetition, clipped colour, a mark shared by pictures."""

from __future__ import annotations

import numpy as np
import pytest

from filtervis import appearance


def noise(seed, shape=(64, 64, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_two_by_two_copies_repeat_fully_and_noise_does_not():
    tile = noise(0, (32, 32, 3))
    assert appearance.repeat(np.tile(tile, (2, 2, 1))) == pytest.approx(1.0)
    assert abs(appearance.repeat(noise(1))) < 0.05


def test_copies_with_seams_mended_still_read_as_repeated():
    picture = np.tile(noise(2, (32, 32, 3)), (2, 2, 1)).astype(np.int16)
    picture[30:34] = 128  # a mended seam
    picture[:, 30:34] = 128
    assert appearance.repeat(picture.astype(np.uint8)) > 0.8


def test_a_smooth_picture_that_is_not_repeated_scores_low():
    y, x = np.mgrid[0:64, 0:64] / 64.0
    picture = (127 + 120 * np.sin(2 * np.pi * (x + 0.3 * y)) * np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) * 6))
    assert appearance.repeat(picture.astype(np.uint8)) < 0.3  # a half-period shift anti-correlates


def test_clipped_counts_channel_values_at_the_ends():
    picture = np.full((10, 10, 3), 128, np.uint8)
    picture[0, :, 0] = 0  # 10 values
    picture[1, :5, 1] = 255  # 5 values
    picture[2, :, 2] = 3  # inside the range
    assert appearance.clipped(picture) == pytest.approx(15 / 300)


def test_shared_sees_a_mark_at_the_same_place_and_not_independent_pictures():
    pictures = [noise(seed) for seed in range(4)]
    assert abs(appearance.shared(pictures)) < 0.05
    marked = []
    for picture in pictures:
        picture = picture.copy()
        picture[20:44, :8] = 0  # a black blotch on the left edge of every picture
        picture[:8, :8] = 255
        marked.append(picture)
    assert appearance.shared(marked) > 0.1
    assert np.isnan(appearance.shared(pictures[:1]))


def test_a_colour_cast_common_to_pictures_is_not_a_shared_mark():
    cast = np.array([120, 0, -120])
    pictures = [np.clip(noise(seed).astype(int) // 2 + 64 + cast, 0, 255).astype(np.uint8) for seed in range(4)]
    assert abs(appearance.shared(pictures)) < 0.05
    assert abs(appearance.repeat(pictures[0])) < 0.05


def test_a_flat_picture_measures_zero_not_nan():
    flat = np.full((16, 16, 3), 7, np.uint8)
    assert appearance.repeat(flat) == 0.0
    assert appearance.shared([flat, noise(3, (16, 16, 3))]) == 0.0


def test_the_manifest_lists_each_pictures_repeat_and_clipped_as_read_back(tiny_model, tmp_path):
    import json

    from PIL import Image

    import filtervis

    filtervis.render(tiny_model, "conv2", "0-2", steps=4, preprocess="tf").save(tmp_path)
    manifest = json.loads((tmp_path / "conv2" / "manifest.json").read_text())
    for entry in manifest["filters"]:
        picture = np.asarray(Image.open(tmp_path / "conv2" / entry["file"]))
        assert entry["repeat"] == pytest.approx(appearance.repeat(picture), abs=1e-4)
        assert entry["clipped"] == pytest.approx(appearance.clipped(picture), abs=1e-4)


def test_a_filter_that_wants_the_most_contrast_keeps_its_colour_in_range(monkeypatch):
    """A filter that sums its pixels drives its picture's colours to the ends: without the range penalty
    8% of the channel values end at 0-2 or 253-255 (clipped); with it (the default) none do."""
    import keras

    import filtervis
    from filtervis import targets

    inputs = keras.Input((24, 24, 3))
    conv = keras.layers.Conv2D(2, 3, name="conv", kernel_initializer="ones", bias_initializer="zeros")(inputs)
    model = keras.Model(inputs, conv)

    def picture():
        result = filtervis.render(model, "conv", [0], steps=48, preprocess="tf", rescue=False, param="fft")
        return result.filters[0]

    kept = picture()
    monkeypatch.setattr(targets.goals, "RANGE_WEIGHT", 0.0)  # the weight unit_goals and ranged add
    free = picture()
    assert appearance.clipped(free.image) > 0.05
    assert appearance.clipped(kept.image) == 0.0
    assert kept.activation >= 0.75 * free.activation  # (a real filter gives up about 1%: docs/METHOD.md)
