"""models/chain.py: a plain chain of layers found in a model, run layer by layer with the pooled
ReLU's gradient taken at the pool: the same values and input gradients as Keras, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest


def _pooled_model(size=20, nested=False, pool=2, strides=2, padding="valid"):
    """conv(relu) -> max pool -> conv(relu) -> conv(linear) -> max pool -> conv(relu): two pooled pairs
    (the first relu, the second not), optionally inside a nested model."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(pool, strides=strides, padding=padding, name="p1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c3")(x)  # linear, then pooled: no pair
    x = keras.layers.MaxPooling2D(2, name="p2")(x)
    outputs = keras.layers.Conv2D(5, 3, activation="relu", name="c4")(x)
    model = keras.Model(inputs, outputs)
    if not nested:
        return model
    outer_in = keras.Input((size, size, 3))
    return keras.Model(outer_in, model(keras.layers.Rescaling(0.5, name="half")(outer_in)))


def _values_and_gradient(function, images):
    import tensorflow as tf

    images = tf.constant(images)

    @tf.function
    def run(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            out = tf.cast(function(images), tf.float32)
            score = tf.reduce_sum(out * out)
        return out, tape.gradient(score, images)

    out, gradient = run(images)
    return out.numpy(), gradient.numpy()


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_chain_gives_keras_values_and_gradients_bit_for_bit(nested, dtype):
    from filtervis.models import chain
    from filtervis.models.precision import convert_model

    model = _pooled_model(nested=nested)
    if dtype != "float32":
        model = convert_model(model, dtype)
    layers = chain.layers(model)
    assert [layer.name for layer in layers] == (["half"] if nested else []) + ["c1", "p1", "c2", "c3", "p2", "c4"]
    assert chain.pooled_relu(layers[-6], layers[-5]) and not chain.pooled_relu(layers[-3], layers[-2])
    images = np.random.default_rng(0).uniform(-2, 2, (3, 20, 20, 3)).astype(np.float32)
    fast_out, fast_grad = _values_and_gradient(chain.forward(layers), images)
    keras_out, keras_grad = _values_and_gradient(lambda x: model(x, training=False), images)
    assert fast_out.dtype == keras_out.dtype and np.array_equal(fast_out, keras_out)
    assert np.any(fast_grad != 0) and np.array_equal(fast_grad, keras_grad)


def test_pooled_relu_gradient_is_the_relus_with_overlapping_windows_and_dead_units():
    """3x3 windows at stride 2 overlap (a unit can be picked by two windows), and a negative bias kills
    whole windows (their maximum is 0): the gradient still matches the ReLU's."""
    import keras
    import tensorflow as tf

    from filtervis.models import chain

    model = _pooled_model(pool=3, strides=2, padding="same")
    conv = model.get_layer("c1")
    conv.bias.assign(tf.fill(conv.bias.shape, -0.5))
    images = np.random.default_rng(1).uniform(-1, 1, (2, 20, 20, 3)).astype(np.float32)
    pooled = keras.Model(model.inputs, model.get_layer("p1").output)(images).numpy()
    assert 0 < np.mean(pooled == 0) < 1  # some windows are dead, some not
    fast = _values_and_gradient(chain.forward(chain.layers(model)), images)
    slow = _values_and_gradient(lambda x: model(x, training=False), images)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_a_pooled_relu_without_bias_gives_keras_values_and_gradients():
    import keras

    from filtervis.models import chain

    keras.utils.set_random_seed(4)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(5, 3, activation="relu", use_bias=False, name="c1")(inputs)
    model = keras.Model(inputs, keras.layers.MaxPooling2D(name="p1")(x))
    layers = chain.layers(model)
    assert chain.pooled_relu(*layers)
    images = np.random.default_rng(4).normal(size=(2, 12, 12, 3)).astype(np.float32)
    fast = _values_and_gradient(chain.forward(layers), images)
    slow = _values_and_gradient(lambda x: model(x, training=False), images)
    assert np.any(fast[1] != 0)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


@pytest.mark.parametrize("build", ["branch", "two_inputs", "shared"])
def test_models_that_are_not_a_chain_are_refused(build):
    import keras

    from filtervis.models import chain

    inputs = keras.Input((8, 8, 3))
    if build == "branch":
        a = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        b = keras.layers.Conv2D(4, 1)(inputs)
        model = keras.Model(inputs, keras.layers.Add()([a, b]))
    elif build == "two_inputs":
        other = keras.Input((8, 8, 3))
        model = keras.Model([inputs, other], keras.layers.Concatenate()([inputs, other]))
    else:
        conv = keras.layers.Conv2D(3, 3, padding="same")
        model = keras.Model(inputs, conv(conv(inputs)))
    assert chain.layers(model) is None


def test_subclassed_model_is_not_a_chain():
    from test_graph import subclassed_model

    from filtervis.models import chain

    assert chain.layers(subclassed_model()) is None


def test_a_sequential_model_with_dropout_and_batchnorm_runs_as_keras_runs_it():
    """Layers other than a pooled ReLU are called as Keras calls them in inference (Dropout passes,
    BatchNormalization uses its moving statistics)."""
    import keras

    from filtervis.models import chain

    keras.utils.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(), keras.layers.Dropout(0.5), keras.layers.BatchNormalization(),
        keras.layers.Conv2D(3, 3, activation="relu"), keras.layers.MaxPooling2D()])
    norm = model.layers[3]
    norm.moving_mean.assign(np.full(norm.moving_mean.shape, 0.3, np.float32))
    layers = chain.layers(model)
    assert [type(layer).__name__ for layer in layers] == [
        "Conv2D", "MaxPooling2D", "Dropout", "BatchNormalization", "Conv2D", "MaxPooling2D"]
    images = np.random.default_rng(2).normal(size=(2, 16, 16, 1)).astype(np.float32)
    fast = _values_and_gradient(chain.forward(layers), images)
    slow = _values_and_gradient(lambda x: model(x, training=False), images)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
