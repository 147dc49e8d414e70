"""The parameterizations: exact inverses, the spectrum gains, the depth-aware choice."""

import numpy as np
import tensorflow as tf
import pytest

from filtervis.params import DEFAULT_INIT_AMPLITUDE, Pixels
from filtervis import params


def test_pixels_init_is_seeded_low_amplitude_noise_around_grey():
    a = Pixels().init(np.random.default_rng(1), 8)
    b = Pixels().init(np.random.default_rng(1), 8)
    assert a.shape == (8, 8, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - 0.5).max() <= DEFAULT_INIT_AMPLITUDE and a.std() > 0


def test_pixels_round_trip_and_projection():
    image = np.linspace(-0.5, 1.5, 12, dtype=np.float32).reshape(1, 2, 2, 3)
    params = Pixels().from_image(image)
    assert params.min() == 0.0 and params.max() == 1.0
    np.testing.assert_array_equal(Pixels().to_image(params), params)
    np.testing.assert_allclose(Pixels().project(tf.constant(image)), np.clip(image, 0, 1))


def test_frequency_scale_is_flat_without_decay_and_falls_with_it():
    flat = params.frequency_scale(8, 0.0)
    assert flat.shape == (8, 5)
    np.testing.assert_allclose(flat, 8.0, rtol=1e-6)
    falling = params.frequency_scale(8, 1.0)
    assert np.sqrt(np.mean(falling ** 2)) == pytest.approx(8.0, rel=1e-5)  # same energy as decay 0
    assert falling[0, 0] == falling.max() and falling[0, 1] == falling[0, 0]  # DC gets the lowest frequency's gain
    assert falling[0, 4] < falling[0, 2] < falling[0, 1]  # higher frequency, lower gain


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_fourier_from_image_inverts_to_image(decay):
    fourier = params.Fourier(decay)
    image = np.random.default_rng(0).uniform(0.05, 0.95, (12, 12, 3)).astype(np.float32)
    spectrum = fourier.from_image(image)
    assert spectrum.shape == fourier.shape(12) == (3, 12, 7, 2)
    back = fourier.to_image(tf.constant(spectrum[None])).numpy()[0]
    np.testing.assert_allclose(back, image, atol=1e-4)


def test_fourier_starts_near_grey_and_stays_in_range():
    fourier = params.Fourier()
    start = fourier.to_image(tf.constant(fourier.init(np.random.default_rng(1), 16)[None])).numpy()
    assert start.shape == (1, 16, 16, 3)
    assert np.abs(start - 0.5).max() < 0.05
    loud = fourier.to_image(tf.constant(np.full((1, *fourier.shape(16)), 50.0, np.float32))).numpy()
    assert loud.min() >= 0.0 and loud.max() <= 1.0


def test_colour_mix_has_unit_largest_column():
    assert np.linalg.norm(params.COLOR_MIX, axis=0).max() == pytest.approx(1.0)


def test_build_rejects_unknown_names_and_negative_decay():
    with pytest.raises(ValueError, match="pixel, fft"):
        params.build("wavelet")
    with pytest.raises(ValueError, match="decay"):
        params.Fourier(-1.0)


def test_auto_picks_pixels_early_and_fft_deep():
    import keras

    inputs = keras.Input((16, 16, 3))
    early = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    deep = keras.layers.MaxPooling2D(4)(early)
    dense = keras.layers.Dense(3)(keras.layers.Flatten()(deep))
    assert params.resolve("auto", 1.0, keras.Model(inputs, early), 16).name == "pixel"
    assert params.resolve("auto", 1.0, keras.Model(inputs, deep), 16).name == "fft"
    assert params.resolve("auto", 1.0, keras.Model(inputs, dense), 16).name == "fft"
    assert params.resolve("pixel", 1.0, keras.Model(inputs, dense), 16).name == "pixel"


def test_renderer_optimizes_a_fourier_image_and_can_start_from_one(tiny_model):
    from filtervis import models, optimize

    settings = optimize.Settings(steps=16, lr=0.1, tv_weight=0.0, lp_weight=0.0, lp_norm=6.0, jitter=1, seed=0)
    renderer = optimize.Renderer(models.cut(tiny_model, "conv2"), models.preprocess_fn("tf"), 16, 2, settings,
                                 params.Fourier())
    assert tuple(renderer.params.shape) == (2, 3, 16, 9, 2)
    results = renderer.render([1, 4])
    assert all(r.image.shape == (16, 16, 3) and r.activation > r.noise_activation for r in results)
    start = np.full((16, 16, 3), 0.25, np.float32)
    again = renderer.render([1], starts=[start])[0]
    assert again.activation > 0 and not np.allclose(again.image, 64)  # moved away from the flat start
