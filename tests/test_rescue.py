"""Rescue of unconverged filters, on a tiny model built here (real TensorFlow, no mocks)."""

import dataclasses
import json

import numpy as np
import pytest

from conftest import run_cli, run_renderer, run_target
from filtervis.options import RunSpec
from filtervis import models, optimize, rescue, starts

SETTINGS = RunSpec(steps=8, lr=0.05, tv_weight=1.0, lp_weight=1.0, lp_norm=6.0, jitter=1, seed=0)


def _render(tiny_model, filters, settings=SETTINGS):
    cut = models.cut(tiny_model, "conv2")
    renderer = run_renderer(cut, models.preprocess_fn("tf"), (16, 16, 3), len(filters), settings)
    return cut, renderer.render(filters)


def _rescuer(cut, settings, max_batch, preprocess=None):
    """The rescue.Rescuer of `cut`'s filters as `filtervis run` compiles them (see conftest.run_target)."""
    preprocess = preprocess or models.preprocess_fn("tf")
    return rescue.Rescuer(run_target(cut, preprocess, (16, 16, 3), settings), preprocess, (16, 16, 3),
                          optimize.Settings.of(settings), max_batch)


def test_converged_filters_are_left_alone(tiny_model):
    cut, results = _render(tiny_model, [0, 1])
    results = [dataclasses.replace(r, activation=max(r.activation, 1.0), noise_activation=0.0) for r in results]
    rescuer = _rescuer(cut, SETTINGS, 2)
    kept, rescued = rescuer.rescue(results)
    assert kept == results and rescued == set()


def test_an_unconverged_filter_is_rerun_twice_and_counts_every_step(tiny_model):
    settings = dataclasses.replace(SETTINGS, gif=True)
    cut, results = _render(tiny_model, [0, 3], settings)
    fine = dataclasses.replace(results[0], activation=1.0, noise_activation=0.0)
    failed = dataclasses.replace(results[1], activation=0.0)  # as if its image had stayed silent
    assert fine.converged and not failed.converged
    rescuer = _rescuer(cut, settings, 2)
    done = []
    kept, rescued = rescuer.rescue([fine, failed], progress=done.append)
    assert rescued == {3}
    assert kept[0] is fine
    assert kept[1].index == 3 and kept[1].steps == 3 * settings.steps
    # at most: the probe, the refinement of its image, 4 passes
    assert rescuer.steps(1) == rescue.probe_steps(settings.steps) + 5 * settings.steps
    assert kept[1].converged  # plain pixels start this filter of the tiny model
    assert not np.array_equal(kept[1].image, failed.image)
    assert sum(done) == rescuer.steps(1)  # rerun alone (a batch of 1, not padded to 2); skipped passes count as done
    assert len(kept[1].frames) == 3 * (1 + 1)  # first and last frame of each pass (8 steps = 1 chunk)
    assert set(rescuer.renderers) == {(0, 1), (1, 1)}


EDGE_BIAS = -12.0  # conv1 fires only where a 3x3 patch is much brighter on its left than its right (tf range):
# a black-white grating of period 4 px gives 12.7, uniform noise has a standard deviation of 2.45
DEAD_BIAS = -1.0


def gated_model(size: int = 16):
    """Input -> conv1 (1 filter, relu): a vertical-edge detector behind a bias that noise and a
    near-grey image never reach -> conv2 (1x1, relu): filter 0 = conv1 (silent, and passing no
    gradient, until a start has a strong edge), filter 1 = a zero kernel and DEAD_BIAS (never fires)."""
    import keras

    inputs = keras.Input((size, size, 3))
    conv1 = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="conv1")
    conv2 = keras.layers.Conv2D(2, 1, activation="relu", name="conv2")
    model = keras.Model(inputs, conv2(conv1(inputs)))
    kernel = np.zeros((3, 3, 3, 1), np.float32)
    kernel[:, 0], kernel[:, 2] = 1.0, -1.0  # [row, column, channel, filter]: left column minus right column
    conv1.set_weights([kernel, np.array([EDGE_BIAS], np.float32)])
    conv2.set_weights([np.array([[[[1.0, 0.0]]]], np.float32), np.array([0.0, DEAD_BIAS], np.float32)])
    return model


def test_a_filter_only_a_start_can_fire_converges_and_one_nothing_fires_is_dead():
    settings = dataclasses.replace(SETTINGS, steps=128)
    cut, preprocess = models.cut(gated_model(), "conv2"), models.preprocess_fn("tf")
    renderer = run_renderer(cut, preprocess, (16, 16, 3), 2, settings)
    silent, never = renderer.render([0, 1])
    assert silent.activation == 0 and silent.noise_activation == 0 and not silent.converged
    assert silent.peak == 0 and never.peak == pytest.approx(DEAD_BIAS)
    rescuer = _rescuer(cut, settings, 2, preprocess)
    bank, peaks = rescuer.start_peaks()
    assert peaks[:, 0].max() > 0  # a start fires it...
    uniform = len(bank) - starts.BANK_TEXTURES  # ...but none of the bank's uniform-noise images does
    assert (peaks[uniform:, 0] == 0).all()
    done = []
    kept, rescued = rescuer.rescue([silent, never], progress=done.append)
    assert rescued == {0, 1} and sum(done) == rescuer.steps(2)  # the steps a filter skips count as done
    assert kept[0].converged and not kept[0].dead and kept[0].activation > 0 and kept[0].peak > 0
    # the keras-vis passes from a near-grey start could not fire it: the start pass is what converged
    assert kept[0].steps == 4 * settings.steps
    assert kept[1].dead and not kept[1].converged and kept[1].peak == pytest.approx(DEAD_BIAS)
    # nothing fired it, nor did the probe: dead without the passes (which cost 4 times --steps)
    assert kept[1].steps == settings.steps + rescue.probe_steps(settings.steps) == 1.5 * settings.steps


def test_no_start_fires_a_silent_filter_on_its_own_without_the_rescue():
    """The control for the test above: the start passes matter, a longer plain run does not fire it."""
    settings = dataclasses.replace(SETTINGS, steps=64, transforms="none", tv_weight=0.0, lp_weight=0.0)
    cut = models.cut(gated_model(), "conv2")
    (result,) = run_renderer(cut, models.preprocess_fn("tf"), (16, 16, 3), 1, settings).render([0])
    assert result.activation == 0 and not result.converged


CHECKER_BIAS = -16.0  # conv fires only on a fine checkerboard: it sums 27 values of +-1 (tf range) under a
# 3x3 checkerboard of signs, and the bank's flat fields and gratings reach at most 3, its noise about 10


def checkerboard_model(size: int = 16):
    """Input -> conv (1 filter, relu) 'conv': a 3x3 checkerboard of signs in every channel behind
    CHECKER_BIAS. Alive (a checkerboard of pixels gives 27 + CHECKER_BIAS), but nothing in the bank fires it."""
    import keras

    inputs = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(1, 3, activation="relu", name="conv")
    model = keras.Model(inputs, conv(inputs))
    signs = (-1.0) ** np.add.outer(np.arange(3), np.arange(3))
    conv.set_weights([np.repeat(signs[:, :, None, None], 3, axis=2).astype(np.float32),
                      np.array([CHECKER_BIAS], np.float32)])
    return model


def test_a_filter_nothing_fired_but_the_probe_fires_is_rescued_not_dead():
    settings = dataclasses.replace(SETTINGS, steps=32, tv_weight=0.0, lp_weight=0.0)
    cut, preprocess = models.cut(checkerboard_model(), "conv"), models.preprocess_fn("tf")
    # a near-grey image (one step from the start) stands for a run that did not fire it
    (silent,) = run_renderer(cut, preprocess, (16, 16, 3), 1, dataclasses.replace(settings, steps=1)).render([0])
    assert silent.peak <= 0 and not silent.converged
    rescuer = _rescuer(cut, settings, 1, preprocess)
    _, peaks = rescuer.start_peaks()
    assert peaks.max() <= 0 and rescuer._unfired([silent]) == [0]  # nothing fired it: it gets the probe
    done = []
    (kept,), rescued = rescuer.rescue([silent], progress=done.append)
    assert rescued == {0} and not kept.dead and kept.peak > 0 and sum(done) == rescuer.steps(1)
    assert kept.converged  # the passes, which the probe let it go through, made it converge
    assert kept.steps > silent.steps + rescue.probe_steps(settings.steps)


def hopeless_channels_model(size: int = 16):
    """Input -> conv1 (4 filters, relu) -> conv2 (3 filters, relu): filter 0 weighs conv1 positively (it
    fires on most pictures); filter 1 has a zero kernel and a negative bias; filter 2 weighs every input
    negatively behind a negative bias (its inputs are 0 or more: it can only fall below 0, but it has a
    gradient). Filters 1 and 2 are dead."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((size, size, 3))
    conv2 = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv2")
    conv1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")
    model = keras.Model(inputs, conv2(conv1(inputs)))
    kernel = np.abs(np.random.default_rng(3).normal(size=(3, 3, 4, 3))).astype(np.float32)
    kernel[..., 1], kernel[..., 2] = 0.0, -kernel[..., 2]
    conv2.set_weights([kernel, np.array([0.0, -1.0, -0.5], np.float32)])
    return model


def test_deciding_a_channel_is_dead_costs_at_most_half_again_a_live_filters_steps(tmp_path):
    path = tmp_path / "hopeless.keras"
    hopeless_channels_model().save(path)
    out = tmp_path / "out"
    result = run_cli("run", "--model", path, "--preprocess", "tf", "--layer", "conv2", "--size", 16,
                     "--quiet", "--no-report", "--out", out)  # the default --steps, 128
    assert result.returncode == 0, result.stderr
    assert "conv2: 1/3 filters converged, 2 dead -> " in result.stdout
    live, *dead = json.loads((out / "conv2" / "manifest.json").read_text())["filters"]
    assert live["status"] == "done" and live["converged"] and not live["rescued"] and live["steps"] == 128
    for entry in dead:
        assert entry["status"] == "dead" and entry["peak_preactivation"] <= 0, entry
        assert entry["steps"] <= 1.5 * live["steps"], entry  # the passes alone would cost 5 times


def test_the_manifest_and_summary_report_dead_filters_apart(tmp_path):
    path = tmp_path / "gated.keras"
    gated_model().save(path)
    out = tmp_path / "out"
    result = run_cli("run", "--model", path, "--preprocess", "tf", "--weights", "none", "--layer", "conv2",
                     "--size", 16, "--steps", 16, "--quiet", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "conv2: 1/2 filters converged, 1 dead -> " in result.stdout
    assert "did not converge" not in result.stderr
    manifest = json.loads((out / "conv2" / "manifest.json").read_text())
    alive, dead = manifest["filters"]
    assert alive["status"] == "done" and alive["converged"] and "peak_preactivation" not in alive
    assert dead["status"] == "dead" and not dead["converged"] and dead["rescued"]
    assert dead["peak_preactivation"] == pytest.approx(DEAD_BIAS)
    assert (out / "conv2" / dead["file"]).is_file() and (out / "conv2" / "palette.png").is_file()
