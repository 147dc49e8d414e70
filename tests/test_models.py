import numpy as np
import pytest
import tensorflow as tf

from filtervis import models
from filtervis.errors import LayerError, ModelError, SpecError, WeightsError


def test_list_layers_includes_nested_paths_and_counts(nested_model):
    rows = {r.path: r for r in models.list_layers(nested_model)}
    assert rows["base/conv2"].filters == 6 and rows["base/conv1"].type == "Conv2D"
    assert rows["base"].filters == 6 and rows["head"].filters == 2
    assert rows["rescale"].filters == 3 and rows["global_average_pooling2d"].filters is None


def test_find_layer_names_closest_on_typo(tiny_model):
    with pytest.raises(LayerError, match=r"no layer 'conv3' \(closest: conv.*filtervis layers"):
        models.find_layer(tiny_model, "conv3")


def test_check_visualizable_rejects_layer_without_channels(tiny_model):
    with pytest.raises(LayerError, match="no channels axis"):
        models.check_visualizable(tiny_model, "gap")


def test_cut_gives_preactivation_and_activation_matching_the_layer(tiny_model):
    x = tf.random.uniform([2, 16, 16, 3], seed=1)
    cut = models.cut(tiny_model, "conv2")
    full = tf.keras.Model(tiny_model.input, tiny_model.get_layer("conv2").output)(x)
    np.testing.assert_allclose(cut.activation(cut.model(x)), full, rtol=1e-5, atol=1e-5)
    assert (cut.model(x).numpy() < 0).any()  # pre-activation, before the ReLU


def test_cut_softmax_dense_gives_logits(tiny_model):
    x = tf.random.uniform([2, 16, 16, 3], seed=2)
    cut = models.cut(tiny_model, "probs")
    logits = cut.activation(cut.model(x))
    np.testing.assert_allclose(tf.nn.softmax(logits), tiny_model(x), rtol=1e-5, atol=1e-6)


def test_cut_nested_layer_matches_running_the_parts(nested_model):
    x = tf.random.uniform([1, 16, 16, 3], maxval=255.0, seed=3)
    cut = models.cut(nested_model, "base/conv1")
    base = nested_model.get_layer("base")
    expected = tf.keras.Model(base.input, base.get_layer("conv1").output)(x / 255.0)
    np.testing.assert_allclose(cut.activation(cut.model(x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode, module", [("caffe", "vgg16"), ("tf", "mobilenet_v2"), ("torch", "densenet")])
def test_preprocess_fn_matches_keras_preprocess_input(mode, module):
    import keras

    pixels = np.random.default_rng(0).integers(0, 256, (1, 4, 4, 3)).astype(np.float32)
    expected = getattr(keras.applications, module).preprocess_input(pixels.copy())
    got = models.preprocess_fn(mode)(tf.constant(pixels / 255.0)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(models.preprocess_fn("none")(tf.constant(pixels / 255.0)), pixels, atol=1e-3)


def test_load_model_file_and_factory(tiny_model_file, tmp_path, monkeypatch):
    loaded = models.load(str(tiny_model_file), "none", "tf")
    assert loaded.size == 16 and loaded.preprocess == "tf"
    with pytest.raises(SpecError, match="--preprocess"):
        models.load(str(tiny_model_file), "none")
    with pytest.raises(SpecError, match="--size 16"):
        models.load(str(tiny_model_file), "none", "tf", size=32)
    (tmp_path / "factory_mod.py").write_text(
        "import keras\n"
        "def make():\n"
        "    i = keras.Input((8, 8, 3)); x = keras.layers.Rescaling(1 / 255)(i)\n"
        "    return keras.Model(i, keras.layers.Conv2D(2, 3, name='c')(x))\n"
        "def notmodel():\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    made = models.load("factory_mod:make", "none")
    assert made.preprocess == "none" and made.size == 8
    with pytest.raises(ModelError, match="returned a int"):
        models.load("factory_mod:notmodel", "none")
    with pytest.raises(ModelError, match="no callable 'missing'"):
        models.load("factory_mod:missing", "none")


def test_load_rejects_unknown_names_and_bad_files(tmp_path):
    with pytest.raises(ModelError, match="did you mean .*vgg16"):
        models.load("vgg61", "none")
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="not a loadable Keras model"):
        models.load(str(empty), "none")
    with pytest.raises(WeightsError, match="VGG16 weights only"):
        models.load("resnet50", "hed")


def test_hed_weights_land_in_vgg16_conv_layers():
    import h5py

    loaded = models.load("vgg16", "hed", size=32)
    with h5py.File(models.hed_weights_path(), "r") as handle:
        kernel = handle["block5/layers/conv2d_2/vars/0"][()]
        first = handle["block1/layers/conv2d/vars/1"][()]
    np.testing.assert_array_equal(loaded.model.get_layer("block5_conv3").get_weights()[0], kernel)
    np.testing.assert_array_equal(loaded.model.get_layer("block1_conv1").get_weights()[1], first)
