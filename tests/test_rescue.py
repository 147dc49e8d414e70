"""Rescue of unconverged filters, on a tiny model built here (real TensorFlow, no mocks)."""

import dataclasses

import numpy as np

from filtervis import models, optimize, rescue

SETTINGS = optimize.Settings(steps=8, lr=0.05, tv_weight=1.0, lp_weight=1.0, lp_norm=6.0, jitter=1, seed=0)


def _render(tiny_model, filters, settings=SETTINGS):
    cut = models.cut(tiny_model, "conv2")
    renderer = optimize.Renderer(cut, models.preprocess_fn("tf"), 16, len(filters), settings)
    return cut, renderer.render(filters)


def test_converged_filters_are_left_alone(tiny_model):
    cut, results = _render(tiny_model, [0, 1])
    results = [dataclasses.replace(r, activation=max(r.activation, 1.0), noise_activation=0.0) for r in results]
    rescuer = rescue.Rescuer(cut, models.preprocess_fn("tf"), 16, SETTINGS, 2)
    kept, rescued = rescuer.rescue(results)
    assert kept == results and rescued == set()


def test_an_unconverged_filter_is_rerun_twice_and_counts_every_step(tiny_model):
    settings = dataclasses.replace(SETTINGS, frames=True)
    cut, results = _render(tiny_model, [0, 3], settings)
    fine = dataclasses.replace(results[0], activation=1.0, noise_activation=0.0)
    failed = dataclasses.replace(results[1], activation=0.0)  # as if its image had stayed silent
    assert fine.converged and not failed.converged
    rescuer = rescue.Rescuer(cut, models.preprocess_fn("tf"), 16, settings, 2)
    done = []
    kept, rescued = rescuer.rescue([fine, failed], progress=done.append)
    assert rescued == {3}
    assert kept[0] is fine
    assert kept[1].index == 3 and kept[1].steps == 3 * settings.steps == rescuer.steps(1) + settings.steps
    assert kept[1].converged  # plain pixels start this filter of the tiny model
    assert not np.array_equal(kept[1].image, failed.image)
    assert sum(done) == rescuer.steps(1)  # rerun alone: a batch of 1, not padded to 2
    assert len(kept[1].frames) == 3 * (1 + 1)  # first and last frame of each pass (8 steps = 1 chunk)
    assert set(rescuer._renderers) == {(0, 1), (1, 1)}
