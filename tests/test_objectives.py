"""Objectives as values: arithmetic, immutability, and their values on a tiny model (public API only)."""

import numpy as np
import pytest

import filtervis
from filtervis import objectives as obj
from filtervis.errors import SpecError


def _images(count=3, size=16, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (count, size, size, 3)).astype(np.float32)


def test_sums_differences_and_scaling_have_the_values_of_their_parts(tiny_model):
    a, b = obj.channel("conv2", 3), obj.channel("conv2", 5)
    images = _images()
    va, vb = (filtervis.evaluate(tiny_model, o, images, preprocess="tf") for o in (a, b))
    assert not np.allclose(va, vb)  # two different filters: the arithmetic below is not trivially true
    combined = a - 0.5 * b
    np.testing.assert_allclose(filtervis.evaluate(tiny_model, combined, images, preprocess="tf"), va - 0.5 * vb,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(filtervis.evaluate(tiny_model, 2 * a + b / 4, images, preprocess="tf"),
                               2 * va + vb / 4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(filtervis.evaluate(tiny_model, -a, images, preprocess="tf"), -va, rtol=1e-6)


def test_an_objective_over_two_layers_adds_both_layers_values(tiny_model):
    images = _images()
    a, b = obj.channel("conv1", 1), obj.class_logit("probs", 2, margin=False)
    both = filtervis.evaluate(tiny_model, a + b, images, preprocess="tf")
    assert (a + b).layers == ("conv1", "probs")
    np.testing.assert_allclose(both, filtervis.evaluate(tiny_model, a, images, preprocess="tf")
                               + filtervis.evaluate(tiny_model, b, images, preprocess="tf"), rtol=1e-5, atol=1e-6)


def test_regularizer_terms_are_the_images_total_variation_and_lp_norm(tiny_model):
    flat = np.full((1, 16, 16, 3), 0.5, np.float32)
    stripes = flat.copy()
    stripes[:, :, ::2] = 1.0  # every other column white: TV across columns is 0.5 * 1/2 ... but > 0
    tv = obj.channel("conv2", 0) + obj.total_variation() - obj.channel("conv2", 0)
    assert tv.layers == ()  # the channel terms cancelled: the objective reads the image alone
    lp = obj.lp_norm(6)
    assert lp.parts[0][1].p == 6.0
    with pytest.raises(SpecError, match="reads no layer"):
        filtervis.evaluate(tiny_model, tv, flat, preprocess="tf")
    withlayer = obj.channel("conv2", 0) - 0.25 * obj.total_variation()
    diff = (filtervis.evaluate(tiny_model, obj.channel("conv2", 0), stripes, preprocess="tf")
            - filtervis.evaluate(tiny_model, withlayer, stripes, preprocess="tf"))
    # columns alternate 1.0 / 0.5: horizontal TV = 0.5 * (15/15), vertical 0
    np.testing.assert_allclose(diff, [0.25 * 0.5], rtol=1e-5)


def test_sums_do_not_change_their_operands():
    a, b = obj.channel("conv2", 3), obj.neuron("conv2", 1, y=2, x=3)
    before_a, before_b = a.parts, b.parts
    total = a + b
    total = total - 0.5 * a
    scaled = 3 * b
    assert a.parts == before_a and b.parts == before_b
    assert total is not a and scaled is not b
    assert dict((t, w) for w, t in total.parts) == {a.parts[0][1]: 0.5, b.parts[0][1]: 1.0}
    assert dict((t, w) for w, t in scaled.parts) == {b.parts[0][1]: 3.0}
    assert sum([a, b]) == a + b  # sum() starts from 0
    with pytest.raises(Exception):
        a.parts = ()  # frozen


def test_repr_reads_like_the_expression():
    expr = obj.channel("c", 3) - 0.5 * obj.channel("c", 7) - 0.1 * obj.total_variation()
    assert repr(expr) == "channel('c', 3) - 0.5 * channel('c', 7) - 0.1 * total_variation()"
    expr = obj.channel("c", 3) - 6 * obj.diversity("c") - 20 * obj.colour_range()
    assert repr(expr) == "channel('c', 3) - 6 * diversity('c') - 20 * colour_range()"


def test_diversity_and_colour_range_combine_like_other_terms():
    """diversity() reads its layer but compares pictures (a group part, not a layer part); colour_range()
    reads the image; both add up and cancel like any term."""
    expr = obj.channel("conv2", 3) - 2 * obj.diversity("conv1") - obj.colour_range()
    assert expr.layers == ("conv2", "conv1")
    assert [t for _, t in expr.layer_parts] == [obj.Channel("conv2", 3)]
    assert expr.group_parts == ((-2.0, obj.Diversity("conv1")),)
    assert expr.image_parts == ((-1.0, obj.ColourRange()),)
    assert (expr + 2 * obj.diversity("conv1")).group_parts == ()
    assert (expr - obj.colour_range()).image_parts == ((-2.0, obj.ColourRange()),)


def test_diversity_is_the_gram_similarity_among_the_batch(tiny_model):
    """Alike pictures are fully similar (1), different ones less; one picture alone has no others (0)."""
    images = _images(3)
    same = np.repeat(images[:1], 3, axis=0)
    div = obj.diversity("conv1")
    np.testing.assert_allclose(filtervis.evaluate(tiny_model, div, same, preprocess="tf"), 1.0, rtol=1e-5)
    different = filtervis.evaluate(tiny_model, div, images, preprocess="tf")
    assert different.shape == (3,) and (different < 0.999).all() and (different > 0).all()
    np.testing.assert_array_equal(filtervis.evaluate(tiny_model, div, images[:1], preprocess="tf"), [0.0])
    both = filtervis.evaluate(tiny_model, obj.channel("conv1", 0) - 0.5 * div, images, preprocess="tf")
    np.testing.assert_allclose(both, filtervis.evaluate(tiny_model, obj.channel("conv1", 0), images,
                                                        preprocess="tf") - 0.5 * different, rtol=1e-5, atol=1e-6)


def test_colour_range_is_zero_inside_and_grows_beyond_it(tiny_model):
    grey = np.full((1, 16, 16, 3), 0.5, np.float32)
    clipped = grey.copy()
    clipped[:, :, :8] = 1.0  # half the picture white: its logit far beyond the range
    values = [filtervis.evaluate(tiny_model, obj.channel("conv1", 0) + obj.colour_range(), x, preprocess="tf")
              - filtervis.evaluate(tiny_model, obj.channel("conv1", 0), x, preprocess="tf") for x in (grey, clipped)]
    assert abs(values[0][0]) < 1e-6 and values[1][0] > 10


@pytest.mark.parametrize("make, message", [
    (lambda: obj.channel("conv2", -1), "index"),
    (lambda: obj.channel(3, 1), "layer name"),
    (lambda: obj.neuron("conv2", 1, y=-2), "y index"),
    (lambda: obj.direction("conv2", []), "finite numbers"),
    (lambda: obj.lp_norm(0.5), "1 or more"),
    (lambda: obj.diversity(None), "layer name"),
    (lambda: obj.channel("conv2", 1) * "2", TypeError),
])
def test_bad_objectives_are_refused_when_built(make, message):
    if message is TypeError:
        with pytest.raises(TypeError):
            make()
    else:
        with pytest.raises(SpecError, match=message):
            make()


@pytest.mark.parametrize("objective, message", [
    (obj.channel("conv2", 6), "past the 6 filters"),
    (obj.direction("conv2", [1.0, 2.0]), "one weight per filter"),
    (obj.neuron("conv2", 1, y=40, x=0), "outside"),
    (obj.class_logit("conv2", 1), "not \\(batch, classes\\)"),
    (obj.diversity("conv2") - obj.colour_range(), "reads no layer"),
])
def test_objectives_that_do_not_fit_the_layer_are_refused_before_rendering(tiny_model, objective, message):
    with pytest.raises(SpecError, match=message):
        filtervis.prepare(tiny_model, objective=objective, preprocess="tf")


def test_a_direction_is_the_weighted_sum_of_channels(tiny_model):
    images = _images()
    vector = [0.0, 1.0, 0.0, -2.0, 0.0, 0.5]
    direct = filtervis.evaluate(tiny_model, obj.direction("conv2", vector), images, preprocess="tf")
    channels = sum(w * filtervis.evaluate(tiny_model, obj.channel("conv2", k), images, preprocess="tf")
                   for k, w in enumerate(vector) if w)
    np.testing.assert_allclose(direct, channels, rtol=1e-5, atol=1e-6)
