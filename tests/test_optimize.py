import numpy as np
import pytest

from filtervis import models, optimize
from filtervis.models import preprocess_fn

SETTINGS = optimize.Settings(steps=12, lr=0.05, tv_weight=0.1, lp_weight=0.1, lp_norm=6.0, jitter=1, seed=0)


def _renderer(model, batch, settings=SETTINGS, layer="conv2"):
    return optimize.Renderer(models.cut(model, layer), preprocess_fn("tf"), 16, batch, settings)


def test_render_raises_each_filters_activation_above_noise(tiny_model):
    results = _renderer(tiny_model, 3).render([0, 2, 5])
    assert [r.index for r in results] == [0, 2, 5]
    for r in results:
        assert r.image.shape == (16, 16, 3) and r.image.dtype == np.uint8
        assert r.steps == 12 and r.activation > r.noise_activation and r.converged


def test_more_steps_give_higher_activation(tiny_model):
    short = _renderer(tiny_model, 2, optimize.Settings(**{**SETTINGS.__dict__, "steps": 2})).render([1, 3])
    long = _renderer(tiny_model, 2, optimize.Settings(**{**SETTINGS.__dict__, "steps": 30})).render([1, 3])
    assert all(l.activation > s.activation for s, l in zip(short, long))


def test_a_filter_gives_the_same_image_alone_or_in_a_padded_batch(tiny_model):
    renderer = _renderer(tiny_model, 4)
    together = renderer.render([0, 4, 5])  # padded to 4
    alone = renderer.render([4])
    assert np.abs(together[1].image.astype(int) - alone[0].image.astype(int)).max() <= 1


def test_activation_reported_is_that_of_the_uint8_image(tiny_model):
    import tensorflow as tf

    cut = models.cut(tiny_model, "conv2")
    result = _renderer(tiny_model, 1).render([3])[0]
    outputs = cut.activation(cut.model(preprocess_fn("tf")(tf.constant(result.image[None] / 255.0, tf.float32))))
    assert float(tf.reduce_mean(outputs[..., 3])) == pytest.approx(result.activation, rel=1e-4)


def test_start_images_are_used(tiny_model):
    start = np.full((16, 16, 3), 0.25, np.float32)
    settings = optimize.Settings(**{**SETTINGS.__dict__, "steps": 1, "lr": 1e-4, "jitter": 0})
    result = _renderer(tiny_model, 1, settings).render([0], starts=[start])[0]
    assert np.abs(result.image.astype(int) - 64).max() <= 1


def test_progress_counts_real_filter_steps(tiny_model):
    seen = []
    _renderer(tiny_model, 4).render([0, 1], progress=seen.append)
    assert sum(seen) == 2 * SETTINGS.steps


def test_dead_relu_filter_is_started(tiny_model):
    import keras

    conv = tiny_model.get_layer("conv2")
    kernel, bias = conv.get_weights()
    bias[2] = -1.0  # silent on grey and on uniform noise
    conv.set_weights([kernel, bias])
    result = _renderer(tiny_model, 1, optimize.Settings(**{**SETTINGS.__dict__, "steps": 60})).render([2])[0]
    assert result.noise_activation == 0.0 and result.activation > 0
    keras.backend.clear_session()


def test_auto_batch_respects_the_budget(tiny_model):
    cut = models.cut(tiny_model, "conv2").model
    per_image = optimize.bytes_per_image(cut, 16)
    assert per_image >= 16 * 16 * (3 + 4 + 6) * 4
    assert optimize.auto_batch(cut, 16, 100, budget=per_image * 3) == 3
    assert optimize.auto_batch(cut, 16, 2, budget=per_image * 100) == 2
    assert optimize.auto_batch(cut, 16, 100, budget=1) == 1


def test_filter_key_depends_on_seed_and_filter_only():
    assert optimize.filter_key(0, 5) == optimize.filter_key(0, 5)
    assert len({optimize.filter_key(s, f) for s in range(3) for f in range(50)}) == 150
