"""Objectives compiled for the optimizer: the per-filter fast path recognizes the diversity and
colour-range terms and renders them as `filtervis run` does; what cannot be rendered is refused."""

import numpy as np
import pytest
import tensorflow as tf

import filtervis
from filtervis import appearance, measures, models, objectives as obj, optimize, params, targets
from filtervis.errors import SpecError
from filtervis.options import RunSpec

SIZE = 16


def _cuts(model, *layers):
    return {layer: models.cut(model, layer) for layer in layers}


def test_run_goals_carry_the_colour_range_and_with_several_pictures_the_diversity():
    one = targets.unit_goals("conv2", [1, 4], "channel", False, tv_weight=0.25)
    three = targets.unit_goals("conv2", [1, 4], "channel", False, tv_weight=0.25, diversity=3)
    assert repr(one[0]) == "channel('conv2', 1) - 0.25 * total_variation() - 20 * colour_range()"
    assert repr(three[1]) == ("channel('conv2', 4) - 0.25 * total_variation() - 20 * colour_range() "
                              "- 6 * diversity('conv2')")


def test_the_diversity_and_colour_range_terms_compile_to_the_fast_path(tiny_model):
    cuts = _cuts(tiny_model, "conv1", "conv2")
    goals = [obj.channel("conv2", k) - 2.5 * obj.diversity("conv2") - 7 * obj.colour_range() for k in (0, 3)]
    form = targets.per_filter(goals, cuts)
    assert form is not None and form.indices == (0, 3)
    assert (form.diversity, form.colour_range, form.tv_weight) == (2.5, 7.0, 0.0)
    target = targets.compile_goals(dict(enumerate(goals)), cuts, tf.identity, (SIZE, SIZE, 3), 0).target
    assert (target.diversity, target.colour_range) == (2.5, 7.0)
    np.testing.assert_array_equal(target.colour_weights().numpy(), [7.0] * 6)
    plain = targets.per_filter([obj.channel("conv2", k) for k in (0, 3)], cuts)
    assert (plain.diversity, plain.colour_range) == (0.0, 0.0)


def test_one_entry_compiles_goals_to_the_fast_path_or_the_general_path(tiny_model):
    """Goals of one filter each of one layer compile once into a LayerFilters whose items are the units'
    filters; others into an ObjectiveBatch per batch, whose items are the units' places in it."""
    cuts = _cuts(tiny_model, "conv1", "conv2")
    fast = targets.compile_goals({10: obj.channel("conv2", 4), 11: obj.channel("conv2", 1)}, cuts, tf.identity,
                                 (SIZE, SIZE, 3), 0)
    assert fast.fast and isinstance(fast.target, targets.LayerFilters) and fast.items == {10: 4, 11: 1}
    target, items = fast.batch([11, 10])
    assert target is fast.target and items == [1, 4]
    mixed = {0: obj.channel("conv2", 4) - 0.5 * obj.channel("conv2", 1), 1: obj.neuron("conv1", 2),
             2: obj.channel("conv2", 0)}
    general = targets.compile_goals(mixed, cuts, tf.identity, (SIZE, SIZE, 3), 0)
    assert not general.fast and general.target is None and general.items == {}
    target, items = general.batch([2, 0])
    assert isinstance(target, targets.ObjectiveBatch) and items == [0, 1]
    assert target.objectives == (mixed[2], mixed[0])


@pytest.mark.parametrize("goals", [
    [obj.channel("conv2", 0) - obj.diversity("conv1"), obj.channel("conv2", 1) - obj.diversity("conv1")],
    [obj.channel("conv2", 0) - obj.diversity("conv2"), obj.channel("conv2", 1)],
    [obj.channel("conv2", 0) - obj.diversity("conv2"), obj.channel("conv2", 1) - 2 * obj.diversity("conv2")],
], ids=["other-layer", "not-every-goal", "other-weight"])
def test_diversity_the_fast_path_cannot_render_leaves_it(tiny_model, goals):
    cuts = _cuts(tiny_model, "conv1", "conv2")
    assert targets.per_filter(goals, cuts) is None
    with pytest.raises(SpecError, match="one filter term each"):
        targets.check_groups(goals, cuts, 2)
    with pytest.raises(SpecError, match="diversity"):
        targets.ObjectiveBatch(goals, cuts, tf.identity, (SIZE, SIZE, 3), 0)


def test_an_objective_with_the_diversity_term_renders_what_diversity_renders(tiny_model):
    """render(objective=[channel(k) - 6 * diversity]) with diversity=2 compiles to the fast path that
    `render(layer, diversity=2)` takes: the same pictures, byte for byte. Another weight moves them."""
    options = dict(steps=24, preprocess="tf", size=SIZE, rescue=False, diversity=2, param="fft")
    run = filtervis.render(tiny_model, "conv2", [0, 1], **options)
    goals = [obj.channel("conv2", k) - targets.DIVERSITY_SHARE * obj.diversity("conv2") for k in (0, 1)]
    ours = filtervis.render(tiny_model, objective=goals, **options)
    weaker = filtervis.render(tiny_model, objective=[g + 5 * obj.diversity("conv2") for g in goals], **options)

    def pictures(result):
        return [v.image for r in result.filters for v in r.variants]

    assert len(pictures(ours)) == 4
    for a, b in zip(pictures(run), pictures(ours)):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(pictures(run), pictures(weaker)))


@pytest.mark.parametrize("objective, options, message", [
    (obj.channel("conv2", 0) - obj.diversity("conv2"), {}, "ask for several with diversity=N"),
    (obj.channel("conv2", 0), dict(diversity=2), "give each objective a diversity term"),
    (obj.channel("conv2", 0) - 0.5 * obj.channel("conv2", 1) - obj.diversity("conv2"), dict(diversity=2),
     "one filter term each"),
])
def test_diversity_that_cannot_be_rendered_is_refused_before_rendering(tiny_model, objective, options, message):
    with pytest.raises(SpecError, match=message):
        filtervis.prepare(tiny_model, objective=objective, preprocess="tf", **options)


def _wants_white():
    """A filter that sums its window: it grows with every channel value, so pictures run into white."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(2, 3, name="conv", kernel_initializer="ones", bias_initializer="zeros")(inputs)
    return keras.Model(inputs, conv)


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_the_colour_range_term_applies_to_sigmoid_parameterizations_only(param):
    """The same filter with and without the colour-range term: fft pictures differ (the term keeps
    colour off white), pixel pictures are the same (pixels are clipped; the term is left out)."""
    cuts = _cuts(_wants_white(), "conv")
    settings = RunSpec(steps=24, tv_weight=0.0, lp_weight=0.0, seed=0, transforms="none", jitter=0)
    pictures = {}
    for weight in (0.0, targets.RANGE_WEIGHT):
        goals = [obj.channel("conv", k) - weight * obj.colour_range() for k in (0, 1)]
        target = targets.compile_goals(dict(enumerate(goals)), cuts, tf.identity, (SIZE, SIZE, 3), 0).target
        parameterization = params.resolve(param, 1.0, cuts["conv"].output_shape, (SIZE, SIZE, 3))
        renderer = optimize.Renderer(target, tf.identity, (SIZE, SIZE, 3), 2, optimize.Settings.of(settings),
                                     parameterization)
        assert (renderer.colour_weights is not None) == (weight > 0 and param != "pixel")
        pictures[weight] = np.stack([r.image for r in renderer.render([0, 1])])
    same = np.array_equal(pictures[0.0], pictures[targets.RANGE_WEIGHT])
    assert same == (param == "pixel")
    if param == "fft":  # measured: 4.6% of the channel values clipped without the term, none with it
        assert appearance.clipped(pictures[0.0][0]) > 0.02 and appearance.clipped(pictures[targets.RANGE_WEIGHT][0]) == 0


def test_the_loss_adds_the_colour_range_of_the_logits_only_once_the_filter_fires(tiny_model):
    cuts = _cuts(tiny_model, "conv2")
    goals = [obj.channel("conv2", k) - 3 * obj.colour_range() for k in (0, 1)]
    target = targets.compile_goals(dict(enumerate(goals)), cuts, tf.identity, (SIZE, SIZE, 3), 0).target
    logits = tf.fill([2, SIZE, SIZE, 3], 7.0)  # beyond the range (values of 0.999)
    images = tf.sigmoid(logits)
    items = tf.constant([0, 1])
    scales = target.scales.numpy()
    post = tf.constant([0.5 * targets.START_THRESHOLD * scales[0], 2 * targets.START_THRESHOLD * scales[1]])
    np.testing.assert_array_equal(targets.fires(target, items, post).numpy(), [0.0, 1.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([images, logits])
        value = targets.loss(target, images, items, post, post, colour_weights=target.colour_weights(), logits=logits)
    bare = targets.loss(target, images, items, post, post)
    colour = (value - bare).numpy()
    assert colour[0] == 0.0  # silent: left to its start first
    np.testing.assert_allclose(colour[1], 3 * (7.0 - measures.RANGE_LOGIT) ** 2, rtol=1e-6)
    assert tape.gradient(value, images) is None  # the colour range reaches the parameters through the logits
    assert tape.gradient(value, logits).numpy()[1].min() > 0  # pulls the values back into the range