"""The layer measures and regularizers, on hand-made tensors."""

import numpy as np
import pytest
import tensorflow as tf

from filtervis import measures


def test_channel_takes_each_images_own_filter_spatial_mean():
    outputs = tf.constant(np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3))
    got = measures.channel(outputs, tf.constant([2, 0])).numpy()
    # image 0, channel 2: values 2, 5, 8, 11 -> 6.5; image 1, channel 0: 12, 15, 18, 21 -> 16.5
    np.testing.assert_allclose(got, [6.5, 16.5])


def test_channel_on_dense_output_is_the_unit():
    np.testing.assert_allclose(measures.channel(tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([1, 0])), [2.0, 3.0])


def test_total_variation_hand_computed():
    image = np.zeros((1, 2, 2, 1), np.float32)
    image[0, 0, 0, 0] = 1.0
    # vertical diffs: |0-1|, |0-0| -> mean 0.5; horizontal: |0-1|, |0-0| -> 0.5
    np.testing.assert_allclose(measures.total_variation(tf.constant(image)), [1.0])
    np.testing.assert_allclose(measures.total_variation(tf.fill([1, 3, 3, 3], 0.7)), [0.0])


def test_lp_norm_is_zero_for_grey_and_one_when_saturated():
    np.testing.assert_allclose(measures.lp_norm(tf.fill([1, 2, 2, 3], 0.5), 6.0), [0.0], atol=1e-6)
    np.testing.assert_allclose(measures.lp_norm(tf.ones([1, 2, 2, 3]), 6.0), [1.0], atol=1e-6)
    half = np.full((1, 1, 2, 1), 0.5, np.float32)
    half[0, 0, 0, 0] = 1.0  # |2(x-0.5)|^2 = 1 and 0 -> mean 0.5 -> sqrt
    np.testing.assert_allclose(measures.lp_norm(tf.constant(half), 2.0), [np.sqrt(0.5)], atol=1e-6)


def test_range_excess_is_zero_inside_the_range_and_pushes_values_back_beyond_it():
    logits = np.array([0.0, 3.9, -3.9, 6.0, -5.0, 4.0, 0.5, -0.5], np.float32)  # 6 and -5: 2 and 1 beyond
    images = tf.constant(1.0 / (1.0 + np.exp(-logits)), shape=[1, 2, 2, 2])
    with tf.GradientTape() as tape:
        tape.watch(images)
        excess = measures.range_excess(images)
    np.testing.assert_allclose(excess, [(2.0**2 + 1.0**2) / 8], rtol=1e-3)
    grad = tape.gradient(excess, images).numpy().reshape(-1)
    assert grad[3] > 0 and grad[4] < 0  # descending it moves the bright value down, the dark one up
    assert (grad[[0, 1, 2, 5, 6, 7]] == 0).all()  # values in range are left alone
    np.testing.assert_allclose(measures.range_excess(tf.fill([2, 4, 4, 3], 0.5)), [0.0, 0.0])


def test_logit_excess_is_range_excess_from_the_logits_and_keeps_pushing_past_the_clip():
    logits = tf.constant([0.0, 3.9, -3.9, 6.0, -5.0, 4.0, 9.0, -8.0], shape=[1, 2, 2, 2])
    np.testing.assert_allclose(measures.logit_excess(logits), measures.range_excess(tf.sigmoid(logits)), rtol=1e-3)
    far = tf.fill([1, 2, 2, 2], 20.0)  # past the clip at 1e-6 from 1 (a logit of 13.8)
    with tf.GradientTape() as tape:
        tape.watch(far)
        excess = measures.logit_excess(far)
    np.testing.assert_allclose(excess, [16.0**2])
    assert (tape.gradient(excess, far).numpy() > 0).all()


def test_soft_relu_approaches_relu_and_keeps_a_gradient():
    x = tf.constant([-30.0, -1.0, 0.0, 50.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        got = measures.soft_relu(x, 1.0)
        total = tf.reduce_sum(got)
    np.testing.assert_allclose(got.numpy()[[0, 3]], [0.0, 50.0], atol=1e-6)
    grad = tape.gradient(total, x).numpy()
    assert np.all(grad > 0) and grad[1] < grad[2] < grad[3]


def test_start_objective_has_a_gradient_however_dead_the_filter():
    pre = tf.constant(np.array([[-100.0, 5.0], [-90.0, 5.0]], np.float32).reshape(1, 2, 1, 2))
    with tf.GradientTape() as tape:
        tape.watch(pre)
        got = measures.start_objective(pre, tf.constant([0]), tf.constant([0.1]))
    grad = tape.gradient(got, pre).numpy()
    assert grad[0, 1, 0, 0] > 0.05  # the unit closest to firing, 90 below zero, still pulls
    assert grad[0, 1, 0, 0] > grad[0, 0, 0, 0] and (grad[..., 1] == 0).all()


def test_started_switches_per_image_on_threshold():
    got = measures.started(tf.constant([0.0, 5.0]), tf.constant([-3.0, -3.0]), tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(got, [-3.0, 5.0])


def test_neuron_takes_the_centre_unit_of_each_images_filter():
    outputs = np.zeros((2, 5, 4, 3), np.float32)
    outputs[0, 2, 2, 1] = 7.0
    outputs[1, 2, 2, 2] = -3.0
    outputs[1, 0, 0, 2] = 100.0  # not the centre: ignored
    values = measures.neuron(tf.constant(outputs), tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(values, [7.0, -3.0])


def test_neuron_and_channel_on_dense_outputs_are_the_unit_itself():
    logits = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    for name in ("neuron", "channel"):
        np.testing.assert_array_equal(measures.LAYER_MEASURES[name](logits, tf.constant([2, 0])).numpy(), [3.0, 4.0])


def test_class_margins_are_the_margin_of_each_class_and_ignore_a_common_shift():
    logits = tf.constant([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    margins = measures.class_margins(logits).numpy()
    expected = [[2.0 - np.log(np.exp(0.0) + np.exp(-1.0)), 0.0 - np.log(np.exp(2.0) + np.exp(-1.0)),
                 -1.0 - np.log(np.exp(2.0) + np.exp(0.0))],
                [0.5 - np.log(np.exp(0.5) + np.exp(3.0))] * 2 + [3.0 - np.log(2 * np.exp(0.5))]]
    np.testing.assert_allclose(margins, expected, rtol=1e-5)
    np.testing.assert_allclose(measures.class_margins(logits + 50.0), margins, rtol=1e-4, atol=1e-4)
    own = measures.class_margin(logits, tf.constant([0, 2])).numpy()
    np.testing.assert_allclose(own, [margins[0, 0], margins[1, 2]], rtol=1e-6)
    assert (margins[np.arange(2), logits.numpy().argmax(1)] > 0).all()  # the winning class leads


def test_a_class_leads_exactly_when_it_wins_the_argmax_whatever_its_margin():
    """Seven classes: class 0 wins image 0 with a probability below 1/2 (its margin is below 0), image 1
    ties classes 1 and 2 (neither wins), two classes: the lead is the margin's sign."""
    logits = tf.constant([[1.0, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7], [0.0, 2.0, 2.0, 0.0, -1.0, 0.0, 0.0]])
    leads = measures.class_leads(logits).numpy()
    np.testing.assert_allclose(leads[0], [0.3] + [-0.3] * 6, rtol=1e-5)
    np.testing.assert_allclose(leads[1], [-2.0, 0.0, 0.0, -2.0, -3.0, -2.0, -2.0], rtol=1e-6)
    assert measures.class_margins(logits).numpy()[0, 0] < 0 < leads[0, 0]  # it wins all the same
    own = measures.class_lead(logits, tf.constant([0, 4])).numpy()
    np.testing.assert_allclose(own, [leads[0, 0], leads[1, 4]], rtol=1e-6)
    np.testing.assert_allclose(measures.class_leads(logits + 50.0), leads, atol=1e-4)
    pair = tf.constant([[0.4, -0.1], [-2.0, 1.0]])
    assert (np.sign(measures.class_leads(pair).numpy()) == np.sign(measures.class_margins(pair).numpy())).all()


def test_gram_similarity_on_hand_made_features():
    """Group members with proportional features are alike (cosine 1); members using disjoint channels
    share nothing (0); each image gets the mean over the other members of its own group only."""
    a = np.zeros((1, 2, 2, 3), np.float32)
    a[..., 0] = 1.0
    b = 2.0 * a  # the same statistics, scaled
    c = np.zeros((1, 2, 2, 3), np.float32)
    c[..., 2] = 1.0
    features = tf.constant(np.concatenate([a, b, c, a, c, c]))  # groups of 3: (a, b, c), (a, c, c)
    similarity = measures.gram_similarity(features, 3).numpy()
    np.testing.assert_allclose(similarity, [0.5, 0.5, 0.0, 0.0, 0.5, 0.5], atol=1e-6)
    with pytest.raises(ValueError, match="groups of 4"):
        measures.gram_similarity(features, 4)


def test_group_similarity_is_the_mean_cosine_within_each_group():
    vectors = tf.constant([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(measures.group_similarity(vectors[:4], 2).numpy(), [1.0, 1.0, 2 ** -0.5, 2 ** -0.5],
                               atol=1e-6)
    np.testing.assert_allclose(measures.group_similarity(vectors[1:4], 3).numpy(),
                               [(0 + 2 ** -0.5) / 2, (0 + 2 ** -0.5) / 2, 2 ** -0.5], atol=1e-6)
    with pytest.raises(ValueError, match="groups of 2"):
        measures.group_similarity(vectors, 2)


def test_fixed_group_similarity_moves_each_row_by_its_own_term_only():
    """Same values; with `fixed` the gradient of row 0's value reaches row 0 and not its group partner."""
    vectors = tf.Variable([[1.0, 0.5], [0.2, 1.0], [1.0, 1.0], [0.0, 1.0]])
    for fixed, partner_moves in ((False, True), (True, False)):
        with tf.GradientTape() as tape:
            values = measures.group_similarity(vectors, 2, fixed=fixed)
            first = values[0]
        grad = tape.gradient(first, vectors).numpy()
        np.testing.assert_allclose(values.numpy(), measures.group_similarity(vectors, 2).numpy(), rtol=1e-6)
        assert np.abs(grad[0]).sum() > 0
        assert (np.abs(grad[1]).sum() > 0) == partner_moves
        assert np.abs(grad[2:]).sum() == 0


def test_share_of_best_and_gate():
    values = tf.constant([2.0, 1.0, 0.5, 0.0, 0.0, 3.0])
    np.testing.assert_allclose(measures.share_of_best(values, 3).numpy(), [1.0, 0.5, 0.25, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(measures.share_of_best(tf.zeros([4]), 2).numpy(), [0.0] * 4)  # no best: 0
    np.testing.assert_allclose(measures.gate(tf.constant([0.2, 0.5, 0.625, 0.75, 0.9]), 0.5, 0.75).numpy(),
                               [0.0, 0.0, 0.5, 1.0, 1.0])
