"""filtervis.keras.FilterCallback during a real model.fit on tiny data."""

import numpy as np
import pytest
from PIL import Image

import keras

from filtervis.errors import SpecError
from filtervis.keras import FilterCallback


def _model():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Dropout(0.5)(x)  # draws from the random stream in training
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probs")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (16, 12, 12, 3)).astype(np.float32), rng.integers(0, 2, 16)


def _fit(callbacks):
    model = _model()
    x, y = _data()
    keras.utils.set_random_seed(9)
    history = model.fit(x, y, epochs=2, batch_size=8, shuffle=True, verbose=0, callbacks=callbacks)
    return model, history


def test_the_callback_writes_one_palette_per_epoch_and_changes_nothing_in_training(tmp_path):
    callback = FilterCallback("conv1", [0, 1, 3], out=tmp_path / "epochs", steps=4, preprocess="unit",
                              tensorboard=tmp_path / "logs")
    watched, history = _fit([callback])
    plain, plain_history = _fit([])
    files = sorted((tmp_path / "epochs" / "conv1").iterdir())
    assert [f.name for f in files] == ["epoch_0001.png", "epoch_0002.png"] and callback.written == files
    for path in files:
        with Image.open(path) as palette:
            assert palette.size[0] > 3 * 12  # three labeled tiles and a title
    # the weights (dropout's random draws included) and losses are those of the run without the callback
    assert history.history["loss"] == plain_history.history["loss"]
    for a, b in zip(watched.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert list((tmp_path / "logs").iterdir())  # a TensorBoard event file


def test_every_skips_epochs(tmp_path):
    callback = FilterCallback("conv1", 2, out=tmp_path, every=2, steps=2, preprocess="unit")
    _fit([callback])
    assert [p.name for p in callback.written] == ["epoch_0002.png"]


@pytest.mark.parametrize("arguments, message", [
    (dict(layer="conv1", every=0), "every must be"),
    (dict(layer="conv1", steps=0), "--steps must be 1 or more"),
    (dict(layer="", steps=1), "layer must be"),
    (dict(layer="conv1", batchsize=2), "unknown option 'batchsize'"),
])
def test_bad_callback_arguments_fail_before_training(tmp_path, arguments, message):
    with pytest.raises(SpecError, match=message):
        FilterCallback(out=tmp_path, **arguments)
