"""The CLI flags of the quality work, through a real subprocess on a tiny model file."""

import json

import pytest
from PIL import Image


def test_gif_param_and_rescue_flags_reach_the_outputs(cli, tiny_model_file, tmp_path):
    out = tmp_path / "out"
    result = cli("run", "--model", tiny_model_file, "--preprocess", "tf", "--layer", "conv2", "--filters", "0-1",
                 "--steps", "32", "--param", "fft", "--no-rescue", "--gif", "--out", out)
    assert result.returncode == 0, result.stderr
    folder = out / "conv2"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["params"]["param"] == "fft" and manifest["params"]["rescue"] is False
    assert all(f["rescued"] is False and f["steps"] == 32 for f in manifest["filters"])
    with Image.open(folder / "filter_0001.gif") as movie:
        assert movie.n_frames == 3  # start, after 16 and after 32 steps
        assert movie.size == (16, 16)
    with Image.open(folder / "palette.gif") as movie, Image.open(folder / "palette.png") as still:
        assert movie.n_frames == 3 and movie.size == still.size


def colour_classes_model():
    """Input 16x16x3 -> GAP -> Dense(3, softmax) 'probs', weights set by hand: with 'tf' preprocessing
    (colour means r, g, b in [-1, 1]) the logits are 4r, 8r - 1 and 6b. Every class can lead, class 0
    only on a dark image (bright red raises class 1's logit faster than class 0's), so an objective
    that raised the class's own logit alone would lose class 0 to class 1; only the margin over the
    other classes finds class 0."""
    import keras
    import numpy as np

    inputs = keras.Input((16, 16, 3))
    dense = keras.layers.Dense(3, activation="softmax", name="probs")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    kernel = np.zeros((3, 3), np.float32)
    kernel[0, 0], kernel[0, 1], kernel[2, 2] = 4.0, 8.0, 6.0
    dense.set_weights([kernel, np.array([0.0, -1.0, 0.0], np.float32)])
    return model


def test_class_visualization_on_a_softmax_dense_layer(cli, tmp_path):
    """Each class's image, read back from its PNG and fed through the model, is put in that class."""
    import numpy as np
    import tensorflow as tf

    from filtervis.models import preprocess_fn

    model = colour_classes_model()
    model.save(tmp_path / "colours.keras")
    # --objective neuron is overridden for classes (their margin); no rescue: the objective alone does it
    result = cli("run", "--model", tmp_path / "colours.keras", "--preprocess", "tf", "--layer", "probs",
                 "--steps", "32", "--objective", "neuron", "--no-rescue", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "probs"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["params"]["param"] == "fft"  # auto: a Dense layer is deep
    assert manifest["model"]["classes"] is True
    assert [f["index"] for f in manifest["filters"]] == [0, 1, 2]
    preprocess = preprocess_fn(manifest["model"]["preprocess"])
    for entry in manifest["filters"]:
        with Image.open(folder / entry["file"]) as png:
            image = np.asarray(png.convert("RGB"), np.float32) / 255.0
        probabilities = model(preprocess(tf.constant(image[None]))).numpy()[0]
        assert probabilities.argmax() == entry["index"], (entry, probabilities)
        # the margin is the log-odds of the class's probability: above 0 exactly when it is above 1/2
        assert entry["activation"] > 0 and entry["activation"] > entry["noise_activation"], entry
        assert entry["activation"] == pytest.approx(np.log(probabilities[entry["index"]])
                                                    - np.log1p(-probabilities[entry["index"]]), abs=1e-3)


def test_a_bad_choice_is_one_line_and_exit_2(cli, tiny_model_file, tmp_path):
    result = cli("run", "--model", tiny_model_file, "--preprocess", "tf", "--layer", "conv2",
                 "--param", "wavelet", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.startswith("filtervis: error:") and "wavelet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
