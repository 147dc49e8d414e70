import numpy as np
import tensorflow as tf

from filtervis.params import DEFAULT_INIT_AMPLITUDE, Pixels


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
