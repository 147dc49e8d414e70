"""Layers of any model: listing what a forward pass reaches, cutting graphs, capturing subclassed models,
bypassing softmax and sigmoid heads, activation layers of every kind."""

import numpy as np
import pytest
import tensorflow as tf

from filtervis import models
from filtervis.models import graph
from filtervis.errors import LayerError


def subclassed_model(channels: int = 3, size: int = 12):
    """A subclassed model (no functional graph): conv -> custom block (conv + PReLU) -> GAP -> Dense(4, softmax)."""
    import keras

    keras.utils.set_random_seed(5)

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(5, 3, padding="same", name="inner")
            self.act = keras.layers.PReLU(shared_axes=[1, 2], name="act")

        def call(self, x):
            return self.act(self.conv(x))

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.first = keras.layers.Conv2D(4, 3, activation="relu", name="first")
            self.block = Block(name="block")
            self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
            self.head = keras.layers.Dense(4, activation="softmax", name="head")

        def call(self, x):
            return self.head(self.pool(self.block(self.first(x))))

    net = Net()
    net(np.zeros((1, size, size, channels), np.float32))
    return net


def zoo_model():
    """Functional: BatchNorm after conv, PReLU, LeakyReLU, GELU and swish Activations, SeparableConv2D,
    DepthwiseConv2D, a residual Add, then GAP -> Dense -> a separate softmax Activation 'predictions'."""
    import keras

    keras.utils.set_random_seed(6)
    i = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(i)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.PReLU(shared_axes=[1, 2], name="prelu")(x)
    y = keras.layers.SeparableConv2D(6, 3, padding="same", activation="gelu", name="sep")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = keras.layers.LeakyReLU(negative_slope=0.1, name="leaky")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Activation("swish", name="swish")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(i, keras.layers.Activation("softmax", name="predictions")(x), name="zoo")


def output_of(model, name, x):
    import keras

    return keras.Model(model.input, model.get_layer(name).output)(x)


def test_subclassed_model_lists_layers_in_call_order_with_nested_paths():
    rows = {r.path: r for r in models.list_layers(subclassed_model())}
    assert list(rows) == ["first", "block/inner", "block/act", "block", "pool", "head"]
    assert rows["block/inner"].shape == (None, 10, 10, 5) and rows["block/inner"].kind == "channels"
    assert rows["pool"].filters == 5 and rows["pool"].kind == "units" and rows["head"].filters == 4


def test_capture_gives_the_pre_activation_and_stops_the_pass():
    net = subclassed_model()
    x = tf.random.uniform([2, 12, 12, 3], seed=4)
    cut = models.cut(net, "block/inner")
    assert cut.model is None and cut.output_shape == (10, 10, 5)
    expected = net.block.conv(net.first(x))
    np.testing.assert_allclose(cut.forward(x), expected, rtol=1e-5, atol=1e-6)
    first = models.cut(net, "first")
    pre = first.forward(x)
    assert (pre.numpy() < 0).any()  # before the ReLU
    np.testing.assert_allclose(first.activation(pre), net.first(x), rtol=1e-5, atol=1e-6)
    called = []
    original = net.head.call
    object.__setattr__(net.head, "call", lambda *a, **k: called.append(1) or original(*a, **k))
    try:
        cut.forward(x)
    finally:
        object.__delattr__(net.head, "call")
    assert called == []  # the layers after the target never ran
    np.testing.assert_allclose(net(x), net(x))  # the model still works as before


def test_capture_inside_tf_function_has_gradients():
    net = subclassed_model()
    cut = models.cut(net, "block/act")

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf.reduce_mean(cut.activation(cut.forward(x)))
        return tape.gradient(value, x)

    g = grad(tf.random.uniform([1, 12, 12, 3], seed=2))
    assert g.shape == (1, 12, 12, 3) and float(tf.reduce_sum(tf.abs(g))) > 0


def test_subclassed_softmax_head_gives_logits_as_classes():
    net = subclassed_model()
    x = tf.random.uniform([3, 12, 12, 3], seed=7)
    cut = models.cut(net, "head")
    assert cut.classes and cut.kind == "units"
    np.testing.assert_allclose(tf.nn.softmax(cut.forward(x)), net(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer, classes", [("predictions", True), ("logits", False), ("gap", False)])
def test_separate_softmax_activation_is_bypassed(layer, classes):
    model = zoo_model()
    x = tf.random.uniform([2, 16, 16, 3], seed=8)
    cut = models.cut(model, layer)
    assert cut.model is not None and cut.classes is classes
    source = "logits" if layer == "predictions" else layer
    np.testing.assert_allclose(cut.forward(x), output_of(model, source, x), rtol=1e-5, atol=1e-5)


def test_softmax_after_global_pooling_renders_the_pooled_values_as_classes():
    import keras

    i = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(7, 3, name="conv")(i)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(i, keras.layers.Activation("softmax", name="predictions")(x))
    x = tf.random.uniform([2, 8, 8, 3], seed=9)
    cut = models.cut(model, "predictions")
    assert cut.classes and cut.output_shape == (7,)
    np.testing.assert_allclose(cut.forward(x), output_of(model, "gap", x), rtol=1e-5, atol=1e-6)


def test_sigmoid_head_gives_logits_but_not_classes():
    import keras

    i = keras.Input((8, 8, 1))
    x = keras.layers.Flatten(name="flat")(i)
    model = keras.Model(i, keras.layers.Dense(3, activation="sigmoid", name="labels")(x))
    cut = models.cut(model, "labels")
    x = tf.random.uniform([2, 8, 8, 1], seed=10)
    assert not cut.classes
    np.testing.assert_allclose(tf.sigmoid(cut.forward(x)), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["conv", "bn", "prelu", "sep", "dw", "leaky", "add", "swish", "gap", "logits"])
def test_every_layer_kind_cuts_to_what_the_layer_outputs(layer):
    model = zoo_model()
    x = tf.random.uniform([2, 16, 16, 3], seed=11)
    cut = models.cut(model, layer)
    np.testing.assert_allclose(cut.activation(cut.forward(x)), output_of(model, layer, x), rtol=1e-4, atol=1e-5)


def test_layers_that_cannot_be_visualized_are_refused_in_one_line():
    net = subclassed_model()
    with pytest.raises(LayerError, match="no layer 'block/nope'"):
        models.cut(net, "block/nope")
    import keras

    i = keras.Input((8, 8, 3))
    model = keras.Model(i, keras.layers.Reshape((2, 2, 4, 12))(keras.layers.Conv2D(3, 1)(i)))
    rows = {r.type: r for r in models.list_layers(model)}
    assert rows["Reshape"].filters is None
    with pytest.raises(LayerError, match="no channels or units"):
        models.check_visualizable(model, model.layers[-1].name)


def test_mixed_float16_model_cuts_to_float32():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        i = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(i)
        model = keras.Model(i, keras.layers.Dense(2, dtype="float32")(keras.layers.Flatten()(x)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    cut = models.cut(model, "conv")
    assert cut.forward(tf.zeros([1, 8, 8, 3])).dtype == tf.float32


def test_children_and_walk_descend_into_custom_layers():
    paths = [p for p, _ in graph.walk(subclassed_model())]
    assert paths == ["first", "block", "block/inner", "block/act", "pool", "head"]
