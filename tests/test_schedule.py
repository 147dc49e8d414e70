"""The schedule renders every kind of target the same at every batch size: a layer's channels, a class
head (a softmax Dense after overlapping 3x3 / stride 2 max pooling, whose gradient is where the pictures
used to depend on the batch) and a captured layer of a subclassed model. Tiny models built here."""

from __future__ import annotations

import numpy as np
import pytest

import filtervis

FAST = {"steps": 8, "preprocess": "tf", "size": 24}


def pooled_head_model():
    """Input 24x24 grey -> conv(6, relu) -> max pool 3x3 / 2 (overlapping windows) -> conv(8, relu) 'conv'
    -> max pool 3x3 / 2 -> GAP -> Dense(4, softmax) 'predictions' (a class head)."""
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((24, 24, 1))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(3, 2, padding="same")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.MaxPooling2D(3, 2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="predictions")(x))


def subclassed_model():
    """A subclassed model (its layers are captured, not cut as a graph) with overlapping max pooling."""
    import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.conv1 = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")
            self.pool = keras.layers.MaxPooling2D(3, 2, padding="same")
            self.conv2 = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv2")
            self.head = keras.layers.Dense(3, name="head")

        def call(self, x):
            x = self.conv2(self.pool(self.conv1(x)))
            return self.head(keras.ops.mean(x, axis=(1, 2)))

    keras.utils.set_random_seed(6)
    model = Net()
    model(np.zeros((1, 24, 24, 3), np.float32))
    return model


@pytest.mark.parametrize("case", ["class head", "channels after pooling", "subclassed"])
def test_pictures_are_the_same_at_every_batch_size(case):
    if case == "subclassed":
        model, layer, filters = subclassed_model(), "conv2", [0, 1, 2, 3, 4]
    else:
        model = pooled_head_model()
        layer, filters = ("predictions", [0, 1, 2, 3]) if case == "class head" else ("conv", [0, 1, 2, 3, 4])
    pictures = {batch: filtervis.render(model, layer, filters, batch=batch, **FAST).images for batch in (1, 3, 5)}
    for batch in (3, 5):
        for index, (one, other) in enumerate(zip(pictures[1], pictures[batch])):
            assert np.array_equal(one, other), f"{case}: filter {filters[index]} differs between --batch 1 and {batch}"
