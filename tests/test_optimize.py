import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_renderer, tiny_conv_model

from filtervis.options import RunSpec
from filtervis import measures, models, optimize, params, targets
from filtervis.models import preprocess_fn

SETTINGS = RunSpec(steps=12, lr=0.05, tv_weight=0.1, lp_weight=0.1, lp_norm=6.0, jitter=1, seed=0)


def _renderer(model, batch, settings=SETTINGS, layer="conv2"):
    return run_renderer(models.cut(model, layer), preprocess_fn("tf"), (16, 16, 3), batch, settings)


def test_render_raises_each_filters_activation_above_noise(tiny_model):
    results = _renderer(tiny_model, 3).render([0, 2, 5])
    assert [r.index for r in results] == [0, 2, 5]
    for r in results:
        assert r.image.shape == (16, 16, 3) and r.image.dtype == np.uint8
        assert r.steps == 12 and r.activation > r.noise_activation and r.converged


def test_more_steps_give_higher_activation(tiny_model):
    short = _renderer(tiny_model, 2, RunSpec(**{**SETTINGS.__dict__, "steps": 2})).render([1, 3])
    long = _renderer(tiny_model, 2, RunSpec(**{**SETTINGS.__dict__, "steps": 30})).render([1, 3])
    assert all(l.activation > s.activation for s, l in zip(short, long))


def test_a_filter_gives_the_same_image_alone_or_in_a_padded_batch(tiny_model):
    renderer = _renderer(tiny_model, 4)
    together = renderer.render([0, 4, 5])  # padded to 4
    alone = renderer.render([4])
    np.testing.assert_array_equal(together[1].image, alone[0].image)


def test_activation_reported_is_that_of_the_uint8_image(tiny_model):
    import tensorflow as tf

    cut = models.cut(tiny_model, "conv2")
    result = _renderer(tiny_model, 1).render([3])[0]
    outputs = cut.activation(cut.forward(preprocess_fn("tf")(tf.constant(result.image[None] / 255.0, tf.float32))))
    assert float(tf.reduce_mean(outputs[..., 3])) == pytest.approx(result.activation, rel=1e-4)


def test_start_images_are_used(tiny_model):
    start = np.full((16, 16, 3), 0.25, np.float32)
    settings = RunSpec(**{**SETTINGS.__dict__, "steps": 1, "lr": 1e-4, "jitter": 0})
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
    result = _renderer(tiny_model, 1, RunSpec(**{**SETTINGS.__dict__, "steps": 60})).render([2])[0]
    assert result.noise_activation == 0.0 and result.activation > 0
    keras.backend.clear_session()


def test_filter_key_depends_on_seed_and_filter_only():
    """A filter's random stream (its start image, and the draws of its transforms at every step) comes
    from its key, and its key from the seed and the filter alone. conv2 filters 1 and 3 are made twins
    (same weights), so only their keys can tell their images apart."""
    keys = {(s, f): optimize.filter_key(s, f) for s in range(3) for f in range(50)}
    assert len(set(keys.values())) == len(keys)  # another seed or another filter: another key
    assert all(0 <= key < 2**31 for key in keys.values())  # fits the renderer's int32 keys

    size = 17  # odd: no image fills whole SIMD vectors (see test_images_are_bit_identical_at_every_batch_size)
    model = tiny_conv_model(size)
    conv = model.get_layer("conv2")
    kernel, bias = conv.get_weights()
    kernel[..., 1], bias[1] = kernel[..., 3], bias[3]
    conv.set_weights([kernel, bias])
    cut = models.cut(model, "conv2")

    def render(seed, batch, steps, *groups):
        """Per group of filters rendered in turn, {filter: (start image, final image)}."""
        settings = _settings(steps=steps, tv_weight=0.0, lp_weight=0.0, seed=seed, gif=True)
        renderer = run_renderer(cut, preprocess_fn("tf"), (size, size, 3), batch, settings)
        return [{r.index: (r.frames[0], r.image) for r in renderer.render(list(group))} for group in groups]

    # 16 steps of the standard transforms (jitter, zoom, rotation, blur), all drawn from the keys
    first, other_place = render(0, 2, 16, [1, 3], [3, 5])  # filter 3 second, then first, beside others
    np.testing.assert_array_equal(first[3][0], other_place[3][0])
    np.testing.assert_array_equal(first[3][1], other_place[3][1])
    assert not np.array_equal(first[1][0], first[3][0])  # another filter: another start...
    assert not np.array_equal(first[1][1], first[3][1])  # ...and, twins though they are, another image

    # the starts (the first frame, before any step) at other batch sizes and another seed
    (alone,), (padded,), (other_seed,) = render(0, 1, 1, [3]), render(0, 4, 1, [5, 0, 3]), render(1, 2, 1, [1, 3])
    np.testing.assert_array_equal(alone[3][0], first[3][0])  # batch 1
    np.testing.assert_array_equal(padded[3][0], first[3][0])  # batch 4, third, one padding image
    assert not np.array_equal(other_seed[3][0], first[3][0])  # another seed: another start
    assert not np.array_equal(other_seed[1][0], first[1][0])


# --- speed: own-channel objective, fused penalties, early stopping, time estimate ---


def _settings(**changes):
    values = dict(steps=32, lr=0.05, tv_weight=1.0, lp_weight=1.0, lp_norm=6.0, jitter=2, seed=0)
    values.update(changes)
    return RunSpec(**values)


def _speed_renderer(batch=2, size=16, layer="conv2", **changes):
    cut = models.cut(tiny_conv_model(size), layer)
    return run_renderer(cut, models.preprocess_fn("tf"), (size, size, 3), batch, _settings(**changes))


@pytest.mark.parametrize("batch", [2, 4])  # 6 filters: batch 2 slices the conv kernel, batch 4 picks from all
def test_own_channel_matches_the_full_layer(batch):
    cut = models.cut(tiny_conv_model(), "conv2")
    inputs = tf.random.stateless_uniform([batch, 16, 16, 3], [3, 4], -1.0, 1.0)
    filters = tf.constant([5, 0, 3, 3][:batch])
    own = models.own_channel(cut, batch)(inputs, filters).numpy()
    full = cut.forward(inputs).numpy()
    assert own.shape == (batch, 16, 16, 1)
    for i, f in enumerate(filters.numpy()):
        np.testing.assert_allclose(own[i, ..., 0], full[i, ..., f], rtol=1e-5, atol=1e-5)


def test_elementwise_activations_are_told_apart():
    import keras

    assert models.is_elementwise(keras.activations.relu, (None, 4, 4, 6))
    assert models.is_elementwise(keras.layers.ReLU(), (None, 6))
    assert not models.is_elementwise(keras.activations.softmax, (None, 4, 4, 6))


@pytest.mark.parametrize("p", [6.0, 2.5])
def test_fused_penalties_match_the_objectives(p):
    images = tf.random.stateless_uniform([2, 9, 7, 3], [5, 6])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        tv, lp = measures.penalties(images, p)
        want_tv, want_lp = measures.total_variation(images), measures.lp_norm(images, p)
        fused = tf.reduce_sum(3.0 * tv + 0.5 * lp)
        plain = tf.reduce_sum(3.0 * want_tv + 0.5 * want_lp)
    np.testing.assert_allclose(tv.numpy(), want_tv.numpy(), rtol=1e-5)
    np.testing.assert_allclose(lp.numpy(), want_lp.numpy(), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(fused, images).numpy(), tape.gradient(plain, images).numpy(),
                               rtol=1e-4, atol=1e-7)


def test_a_filter_gives_the_same_image_in_any_batch():
    renderer = _speed_renderer(batch=2, steps=16)
    first = {r.index: r for r in renderer.render([1, 3])}
    second = {r.index: r for r in renderer.render([3, 5])}
    np.testing.assert_array_equal(first[3].image, second[3].image)
    assert first[3].noise_activation == second[3].noise_activation


@pytest.mark.parametrize("param", [params.Pixels((17, 17, 3)), params.Fourier((17, 17, 3))], ids=["pixel", "fft"])
@pytest.mark.parametrize("tv_weight, lp_weight", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)], ids=["defaults", "tv", "lp"])
def test_images_are_bit_identical_at_every_batch_size(param, tv_weight, lp_weight):
    """At an odd size (no image fills whole SIMD vectors), a filter's image does not depend on the batch
    size or its place in the batch: batch 16 puts the per-image [B] vectors on the CPU's vector path,
    batches 1 and 3 on its one-value-at-a-time path. (TV and Lp both on is not covered: see README.)"""
    size = 17
    cut = models.cut(tiny_conv_model(size), "conv2")
    settings = _settings(steps=48, tv_weight=tv_weight, lp_weight=lp_weight)
    images = {}
    for batch in (1, 3, 16):
        renderer = run_renderer(cut, models.preprocess_fn("tf"), (size, size, 3), batch, settings, param)
        filters = [5, 0, 3, 1, 4, 2]
        for start in range(0, len(filters), batch):
            for result in renderer.render(filters[start:start + batch]):
                images.setdefault(result.index, []).append(result.image)
    for index, found in images.items():
        assert len(found) == 3
        for image in found[1:]:
            np.testing.assert_array_equal(image, found[0], err_msg=f"filter {index}")


@pytest.mark.parametrize("batch, chains, expected", [
    (1, 2, [(0, 1)]), (2, 2, [(0, 1), (1, 2)]), (5, 2, [(0, 2), (2, 5)]), (16, 2, [(0, 8), (8, 16)]),
    (4, 1, [(0, 4)]), (3, 8, [(0, 1), (1, 2), (2, 3)])])
def test_chains_cover_the_batch_once_in_near_equal_slices(batch, chains, expected):
    assert list(optimize.chain_bounds(batch, chains)) == expected


@pytest.mark.parametrize("param", [params.Pixels((17, 17, 3)), params.Fourier((17, 17, 3))], ids=["pixel", "fft"])
def test_running_a_batch_as_chains_changes_no_image(param):
    """Chains are a schedule, not a different computation: one chain or one per image give the images
    (and the losses, steps and flags) the default two chains give."""
    size = 17
    cut = models.cut(tiny_conv_model(size), "conv2")
    settings = _settings(steps=32, tv_weight=0.3, lp_weight=0.0)
    found = []
    for chains in (optimize.CHAINS, 1, 4):
        renderer = run_renderer(cut, models.preprocess_fn("tf"), (size, size, 3), 4, settings, param)
        renderer.chains = optimize.chain_bounds(4, chains)  # before the first trace
        found.append(renderer.render([5, 0, 3]))
    assert len(found[0]) == 3
    for other in found[1:]:
        for a, b in zip(found[0], other):
            np.testing.assert_array_equal(a.image, b.image)
            assert (a.loss, a.steps, a.finite) == (b.loss, b.steps, b.finite)


def test_the_loss_falls_and_every_step_is_reported():
    renderer = _speed_renderer(batch=2, steps=48)
    seen = []
    results = renderer.render([0, 2], progress=seen.append)
    assert sum(seen) == 2 * 48 and all(r.steps == 48 for r in results)
    fresh = _speed_renderer(batch=2, steps=1).render([0, 2])
    assert all(r.loss < f.loss for r, f in zip(results, fresh))


def test_plateau_rule_on_hand_made_losses():
    previous = np.array([-10.0, -10.0, 0.5, 0.5])
    current = np.array([-10.5, -10.05, 0.495, 0.3])
    # gains 0.5, 0.05, 0.005, 0.2 against 1% of max(|loss|, 1): 0.105, 0.1005, 0.01, 0.01
    np.testing.assert_array_equal(optimize.plateaued(previous, current, 0.01), [False, True, True, False])


def test_early_stop_stops_filters_and_counts_their_steps():
    steps = 256
    renderer = _speed_renderer(batch=2, steps=steps, early_stop=0.5)
    seen = []
    results = renderer.render([0, 1], progress=seen.append)
    assert sum(seen) == 2 * steps  # the bar always reaches its total
    for result in results:
        assert optimize.MIN_EARLY_STOP_STEPS <= result.steps < steps
        assert result.steps % optimize.DEFAULT_CHUNK == 0


def test_cli_early_stop_writes_steps_and_memory_to_the_manifest(cli, tiny_model_file, tmp_path):
    done = cli("run", "--model", tiny_model_file, "--preprocess", "tf", "--layer", "conv2", "--filters", "0-2",
               "--steps", "512", "--early-stop", "0.5", "--memory-budget", "8G", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "conv2" / "manifest.json").read_text())
    assert manifest["params"]["early_stop"] == 0.5 and manifest["params"]["batch"] == 3
    assert manifest["memory"]["budget"] == 8 * 2**30 and manifest["memory"]["planned_peak"] < 8 * 2**30
    assert all(64 <= f["steps"] < 512 for f in manifest["filters"])


def test_alpha_map_sums_channels_and_clips_at_the_percentile():
    attribution = np.zeros((10, 10, 3), np.float32)
    attribution[..., 0] = np.arange(100, dtype=np.float32).reshape(10, 10)
    attribution[..., 1] = attribution[..., 0]  # summed: 2x
    alpha = optimize.alpha_map(attribution)
    top = np.percentile(2 * np.arange(100), optimize.ALPHA_PERCENTILE)
    assert alpha.shape == (10, 10, 1) and alpha.dtype == np.uint8
    assert alpha[0, 0, 0] == 0 and alpha[9, 9, 0] == 255  # above the percentile: clipped
    assert alpha[5, 0, 0] == round(100 / top * 255)
    assert (optimize.alpha_map(np.zeros((4, 4, 1))) == 0).all()


def test_alpha_is_clear_where_the_filter_cannot_see():
    """A model that looks only at the left half of the image: the right half never gets a gradient, so
    its alpha is 0, while the seen half is mostly opaque; the picture and its activation are those of
    the same run without alpha."""
    import keras

    inputs = keras.Input((16, 16, 3))
    left = keras.layers.Cropping2D(((0, 0), (0, 8)))(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, activation="relu", name="conv")(left))
    cut = models.cut(model, "conv")
    results = {}
    for alpha in (False, True):
        settings = _settings(steps=16, tv_weight=0.0, lp_weight=0.0, transforms="none", jitter=0, alpha=alpha)
        renderer = run_renderer(cut, preprocess_fn("tf"), (16, 16, 3), 2, settings)
        results[alpha] = renderer.render([0, 1])
    for plain, seen in zip(results[False], results[True]):
        assert plain.alpha is None and seen.alpha.shape == (16, 16, 1)
        assert (seen.alpha[:, 8:] == 0).all() and seen.alpha[:, :8].mean() > 60
        np.testing.assert_array_equal(plain.image, seen.image)
        assert plain.activation == seen.activation


@pytest.mark.parametrize("batch, group, expected", [
    (6, 3, [(0, 3), (3, 6)]), (12, 3, [(0, 6), (6, 12)]), (9, 3, [(0, 3), (3, 9)]), (2, 2, [(0, 2)])])
def test_chains_keep_each_filters_pictures_together(batch, group, expected):
    assert list(optimize.chain_bounds(batch, group=group)) == expected


def test_diverse_pictures_differ_more_than_independent_seeds_and_not_with_the_batch():
    """--diversity 3 on the tiny model: the three pictures of a filter have less alike feature statistics
    (mean Gram cosine at the layer's input) than three pictures from three seeds, each picture still
    drives its filter above noise and at least targets.DIVERSITY_GATE[0] of its filter's best picture, and the
    pictures do not depend on the batch (one filter or two)."""
    size = 16
    cut = models.cut(tiny_conv_model(size), "conv2")
    settings = _settings(steps=48, tv_weight=0.0, lp_weight=0.0, diversity=3)
    keys = [targets.variant_key(0, f, k) for f in (0, 5) for k in range(3)]
    together = run_renderer(cut, preprocess_fn("tf"), (size, size, 3), 6, settings).render(
        [0, 0, 0, 5, 5, 5], keys=keys)
    alone = run_renderer(cut, preprocess_fn("tf"), (size, size, 3), 3, settings).render(
        [5, 5, 5], keys=keys[3:])
    for a, b in zip(together[3:], alone):
        np.testing.assert_array_equal(a.image, b.image)
    assert all(r.activation > r.noise_activation for r in together)
    for group in (together[:3], together[3:]):  # the gate: no picture gives up its filter to be different
        activations = [r.activation for r in group]
        assert min(activations) >= targets.DIVERSITY_GATE[0] * max(activations)
    single = run_renderer(cut, preprocess_fn("tf"), (size, size, 3), 3, _settings(
        steps=48, tv_weight=0.0, lp_weight=0.0))
    seeds = single.render([0, 0, 0], keys=keys[:3]) + single.render([5, 5, 5], keys=keys[3:])
    target = targets.LayerFilters(cut, preprocess_fn("tf"), (size, size, 3), "channel", 0)

    def alike(results):
        pixels = tf.constant(np.stack([r.image for r in results]).astype(np.float32) / 255.0)
        _, _, maps = target.objective(preprocess_fn("tf")(pixels), tf.constant([r.index for r in results]),
                                      features=True)
        return measures.gram_similarity(maps, 3).numpy().mean()

    assert alike(together) < 0.5 * alike(seeds)  # measured: 0.27 against 0.97
