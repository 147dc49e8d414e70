"""The robustness transforms: exact values on tiny tensors."""

import numpy as np
import pytest
import tensorflow as tf

from filtervis.transforms import random_affine
from filtervis import transforms


def _images(batch=3, size=12, width=None, channels=3):
    shape = (batch, size, width or size, channels)
    return tf.constant(np.random.default_rng(0).uniform(size=shape).astype(np.float32))


def test_no_ranges_means_no_transform():
    assert random_affine() is None


def test_bad_ranges_are_rejected():
    with pytest.raises(ValueError):
        random_affine(jitter=-1)
    with pytest.raises(ValueError):
        random_affine(scale=(1.2, 1.0))


def test_jitter_is_a_whole_pixel_shift_within_range():
    images = _images()
    shifted = random_affine(jitter=2)(images, tf.constant([1, 2, 3]), tf.constant(0)).numpy()
    inner = images.numpy()[:, 2:-2, 2:-2]
    for b in range(3):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.allclose(shifted[b, 2 - dy:10 - dy, 2 - dx:10 - dx], inner[b], atol=1e-5)]
        assert len(matches) == 1


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_jitter_shifts_a_wide_image_by_whole_pixels(channels):
    images = _images(size=12, width=20, channels=channels)
    shifted = random_affine(jitter=2)(images, tf.constant([1, 2, 3]), tf.constant(0)).numpy()
    assert shifted.shape == (3, 12, 20, channels)
    inner = images.numpy()[:, 2:-2, 2:-2]
    for b in range(3):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.allclose(shifted[b, 2 - dy:10 - dy, 2 - dx:18 - dx], inner[b], atol=1e-5)]
        assert len(matches) == 1


@pytest.mark.parametrize("height, width", [(11, 21), (21, 11)])
def test_rotation_and_zoom_turn_a_non_square_image_about_its_centre(height, width):
    images = _images(batch=4, size=height, width=width, channels=4)
    turned = random_affine(scale=(0.8, 1.2), degrees=40)(images, tf.constant([1, 2, 3, 4]), tf.constant(0)).numpy()
    assert turned.shape == (4, height, width, 4)
    centre = (height // 2, width // 2)
    np.testing.assert_allclose(turned[:, centre[0], centre[1]], images.numpy()[:, centre[0], centre[1]], atol=1e-5)
    assert not np.allclose(turned[:, centre[0], centre[1] + 1], images.numpy()[:, centre[0], centre[1] + 1])


def test_randomness_depends_on_key_and_step_not_on_batch():
    transform = random_affine(jitter=3, scale=(0.9, 1.1), degrees=5)
    images = _images()
    batch = transform(images, tf.constant([7, 8, 9]), tf.constant(4)).numpy()
    alone = transform(images[1:2], tf.constant([8]), tf.constant(4)).numpy()
    np.testing.assert_allclose(batch[1], alone[0], atol=1e-6)
    later = transform(images, tf.constant([7, 8, 9]), tf.constant(5)).numpy()
    assert not np.allclose(batch, later)


def test_transform_is_differentiable():
    images = tf.Variable(_images())
    with tf.GradientTape() as tape:
        out = random_affine(jitter=2, degrees=10)(images, tf.constant([1, 2, 3]), tf.constant(0))
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, images)
    assert grad is not None and float(tf.reduce_sum(grad)) > 0


def test_none_is_no_transform_and_unknown_names_fail():
    assert transforms.build("none", 4) is None
    with pytest.raises(ValueError, match="standard, none"):
        transforms.build("fancy", 4)


def test_standard_moves_each_image_by_its_own_key_and_step():
    apply = transforms.build("standard", 2)
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32)[None, :, None], (16, 1, 3))
    images = tf.constant(np.stack([ramp, ramp]))
    keys = tf.constant([5, 6])
    first = apply(images, keys, 0).numpy()
    np.testing.assert_array_equal(first, apply(images, keys, 0).numpy())  # stateless: same key, same step
    assert not np.allclose(first[0], first[1])  # another key, another draw
    assert not np.allclose(first, apply(images, keys, 1).numpy())  # another step, another draw
    flat = tf.fill([2, 16, 16, 3], 0.3)
    np.testing.assert_allclose(apply(flat, keys, 3).numpy(), 0.3, atol=1e-6)  # reflected borders: no black edges


def test_random_blur_softens_by_a_per_image_amount_and_keeps_flat_images():
    blur = transforms.random_blur(1.0)
    checker = np.indices((8, 8)).sum(axis=0) % 2
    images = tf.constant(np.stack([np.repeat(checker[:, :, None], 3, axis=2)] * 2).astype(np.float32))
    keys = tf.constant([1, 2])
    out = blur(images, keys, 0).numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0
    spread = [out[i].std() for i in range(2)]
    assert all(s < images.numpy()[0].std() for s in spread) and spread[0] != spread[1]
    np.testing.assert_allclose(blur(tf.fill([1, 8, 8, 3], 0.7), keys[:1], 0).numpy(), 0.7, atol=1e-6)
    np.testing.assert_allclose(transforms.gaussian_kernel(1.0).numpy().sum(axis=(0, 1)), 1.0, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 4])
def test_random_blur_of_grey_and_rgba_images(channels):
    blur = transforms.random_blur(1.0)
    keys = tf.constant([1, 2])
    flat = tf.constant(np.stack([np.full((6, 10, channels), 0.7), np.full((6, 10, channels), 0.2)]).astype(np.float32))
    out = blur(flat, keys, 0).numpy()
    assert out.shape == (2, 6, 10, channels)
    np.testing.assert_allclose(out, flat.numpy(), atol=1e-6)  # constants stay constant
    checker = (np.indices((6, 10)).sum(axis=0) % 2).astype(np.float32)
    images = tf.constant(np.stack([np.stack([checker * (c + 1) / channels for c in range(channels)], axis=-1)] * 2))
    out = blur(images, keys, 0).numpy()
    assert out.shape == (2, 6, 10, channels)
    for c in range(channels):  # every channel blurred alike, on its own
        alone = blur(images[..., c:c + 1], keys, 0).numpy()[..., 0]
        np.testing.assert_allclose(out[..., c], alone, atol=1e-6)
        assert out[0, ..., c].std() < images.numpy()[0, ..., c].std()


def test_gaussian_kernel_has_one_plane_per_channel():
    kernel = transforms.gaussian_kernel(1.0, channels=4).numpy()
    assert kernel.shape == (5, 5, 4, 1)
    np.testing.assert_array_equal(kernel, np.repeat(transforms.gaussian_kernel(1.0, channels=1).numpy(), 4, axis=2))
    np.testing.assert_array_equal(transforms.gaussian_kernel(1.0).numpy(), kernel[:, :, :3])  # RGB by default


def test_random_blur_needs_a_known_channel_count():
    apply = tf.function(transforms.random_blur(1.0),
                        input_signature=[tf.TensorSpec([None, 8, 8, None]), tf.TensorSpec([None], tf.int32),
                                         tf.TensorSpec([], tf.int32)])
    with pytest.raises(ValueError, match="known channel count"):
        apply.get_concrete_function()


@pytest.mark.parametrize("channels", [1, 4])
def test_standard_keeps_flat_non_square_images_flat(channels):
    flat = tf.fill([2, 10, 18, channels], 0.3)
    out = transforms.build("standard", 3)(flat, tf.constant([5, 6]), tf.constant(2)).numpy()
    assert out.shape == (2, 10, 18, channels)
    np.testing.assert_allclose(out, 0.3, atol=1e-6)


def test_compose_applies_in_order_and_skips_none():
    double = lambda images, keys, step: images * 2.0  # noqa: E731
    shift = lambda images, keys, step: images + 1.0  # noqa: E731
    both = transforms.compose(double, None, shift)
    assert both(tf.constant([1.0]), None, 0).numpy().tolist() == [3.0]
    assert transforms.compose(None, None) is None
