import numpy as np
import pytest
import tensorflow as tf

from filtervis import models
from filtervis.errors import LayerError, ModelError, SpecError, WeightsError


def test_list_layers_includes_nested_paths_and_counts(nested_model):
    rows = {r.path: r for r in models.list_layers(nested_model)}
    assert rows["base/conv2"].filters == 6 and rows["base/conv1"].type == "Conv2D"
    assert rows["base"].filters == 6 and rows["head"].filters == 2 and rows["head"].kind == "units"
    (pooled,) = [r for r in rows.values() if r.type == "GlobalAveragePooling2D"]
    assert rows["rescale"].filters == 3 and pooled.filters == 6
    assert pooled.kind == "units" and rows["base/conv2"].kind == "channels"


def test_find_layer_names_closest_on_typo(tiny_model):
    with pytest.raises(LayerError, match=r"no layer 'conv3' \(closest: conv.*filtervis layers"):
        models.find_layer(tiny_model, "conv3")


def test_check_visualizable_counts_units_of_pooling_and_refuses_inputs(tiny_model):
    assert models.check_visualizable(tiny_model, "gap") == 6
    with pytest.raises(LayerError, match="no channels or units"):
        models.check_visualizable(tiny_model, tiny_model.layers[0].name)


def test_cut_gives_preactivation_and_activation_matching_the_layer(tiny_model):
    x = tf.random.uniform([2, 16, 16, 3], seed=1)
    cut = models.cut(tiny_model, "conv2")
    full = tf.keras.Model(tiny_model.input, tiny_model.get_layer("conv2").output)(x)
    np.testing.assert_allclose(cut.activation(cut.forward(x)), full, rtol=1e-5, atol=1e-5)
    assert (cut.forward(x).numpy() < 0).any()  # pre-activation, before the ReLU


def test_cut_softmax_dense_gives_logits(tiny_model):
    x = tf.random.uniform([2, 16, 16, 3], seed=2)
    cut = models.cut(tiny_model, "probs")
    logits = cut.activation(cut.forward(x))
    np.testing.assert_allclose(tf.nn.softmax(logits), tiny_model(x), rtol=1e-5, atol=1e-6)
    assert cut.classes


def test_cut_nested_layer_matches_running_the_parts(nested_model):
    x = tf.random.uniform([1, 16, 16, 3], maxval=255.0, seed=3)
    cut = models.cut(nested_model, "base/conv1")
    base = nested_model.get_layer("base")
    expected = tf.keras.Model(base.input, base.get_layer("conv1").output)(x / 255.0)
    np.testing.assert_allclose(cut.activation(cut.forward(x)), expected, rtol=1e-5, atol=1e-5)


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
    assert loaded.size == (16, 16) and loaded.preprocess == "tf" and loaded.input_shape == (16, 16, 3)
    bare = models.load(str(tiny_model_file), "none")  # listing layers needs no preprocessing
    assert bare.preprocess is None
    with pytest.raises(SpecError, match="--preprocess"):
        models.guess_preprocess(bare)
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
    assert models.guess_preprocess(made) == "none" and made.size == (8, 8)
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


def _model(shape, name="m"):
    import keras

    keras.utils.set_random_seed(2)
    i = keras.Input(shape)
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(i)
    return keras.Model(i, keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x)), name=name)


@pytest.mark.parametrize("channels, kind", [(1, "grayscale"), (3, "RGB"), (4, "RGBA")])
def test_describe_knows_channels_and_non_square_sizes(channels, kind):
    loaded = models.describe(_model((12, 20, channels)))
    assert loaded.input_shape == (12, 20, channels) and loaded.size == (12, 20)
    assert models.CHANNEL_NAMES[loaded.channels] == kind
    with pytest.raises(SpecError, match=r"takes 20x12 .*--size 20x12"):
        models.describe(_model((12, 20, channels)), size=(20, 12))


def test_describe_refuses_other_channel_counts_and_unbuilt_subclassed_models():
    import keras

    with pytest.raises(ModelError, match="2-channel images; filtervis renders 1 .*3 .*or 4"):
        models.describe(_model((8, 8, 2)))

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(2, 3)

        def call(self, x):
            return self.conv(x)

    with pytest.raises(ModelError, match="records no input shape"):
        models.describe(Net())
    probed = models.describe(Net(), size=(10, 14))  # a model that takes any size: channels probed
    assert probed.input_shape == (10, 14, 3)


def test_multi_input_model_needs_input_and_holds_the_others_at_zeros():
    import keras

    image, extra = keras.Input((8, 8, 1), name="image"), keras.Input((3,), name="meta")
    x = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, name="conv")(image))
    out = keras.layers.Dense(2, name="head")(keras.layers.Concatenate()([x, extra]))
    model = keras.Model([image, extra], out)
    with pytest.raises(SpecError, match=r"2 inputs \(image, meta\).*--input NAME"):
        models.describe(model)
    with pytest.raises(SpecError, match="no such input; its inputs are image, meta"):
        models.describe(model, input_name="pixels")
    loaded = models.describe(model, input_name="image")
    assert loaded.input_shape == (8, 8, 1)
    x = tf.random.uniform([2, 8, 8, 1], seed=1)
    cut = models.cut(loaded, "head")
    np.testing.assert_allclose(cut.forward(x), model([x, tf.zeros([2, 3])]), rtol=1e-5, atol=1e-6)


def test_preprocess_unit_callable_and_channel_checks(tmp_path, monkeypatch):
    x = tf.constant(np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 2, 2, 4))
    np.testing.assert_array_equal(models.preprocess_fn("unit", 4)(x), x)
    np.testing.assert_allclose(models.preprocess_fn("tf", 1)(x[..., :1]), x[..., :1] * 2 - 1)
    with pytest.raises(SpecError, match="caffe uses ImageNet's RGB statistics.*1-channel"):
        models.preprocess_fn("caffe", 1)
    (tmp_path / "prep_mod.py").write_text("def halve(x):\n    return x * 0.5 - 0.25\n"
                                          "def broken(x):\n    raise RuntimeError('no')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    np.testing.assert_allclose(models.preprocess_fn("prep_mod:halve", 4)(x), x.numpy() * 0.5 - 0.25)
    with pytest.raises(SpecError, match="prep_mod:broken failed"):
        models.preprocess_fn("prep_mod:broken", 3)
    with pytest.raises(ModelError, match="no callable 'gone'"):
        models.preprocess_fn("prep_mod:gone", 3)


def test_legacy_hdf5_model_files_and_weights_only_files(tmp_path):
    model = _model((10, 10, 1))
    legacy = tmp_path / "model.h5"
    model.save(legacy)  # the legacy HDF5 format, as Keras 2 / tf.keras wrote it
    renamed = tmp_path / "model.hdf5"
    legacy.rename(renamed)  # ModelCheckpoint's usual name
    loaded = models.load(str(renamed), "none")
    assert loaded.input_shape == (10, 10, 1)
    x = tf.random.uniform([1, 10, 10, 1], seed=3)
    np.testing.assert_allclose(loaded.model(x), model(x), rtol=1e-5, atol=1e-6)
    weights = tmp_path / "only.weights.h5"
    model.save_weights(weights)
    fresh = tmp_path / "fresh.keras"
    _model((10, 10, 1)).save(fresh)
    with_weights = models.load(str(fresh), str(weights))
    np.testing.assert_allclose(with_weights.model(x), model(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(WeightsError, match="does not exist"):
        models.load(str(fresh), str(tmp_path / "missing.weights.h5"))


def test_lambda_in_a_legacy_hdf5_file_needs_unsafe_model(tmp_path):
    import keras

    i = keras.Input((4, 4, 1))
    model = keras.Model(i, keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Conv2D(1, 1)(i)))
    path = tmp_path / "lambda.hdf5"
    model.save(str(path).replace(".hdf5", ".h5"))
    (tmp_path / "lambda.h5").rename(path)
    with pytest.raises(ModelError, match="--unsafe-model"):
        models.load(str(path), "none")
    assert models.load(str(path), "none", unsafe=True).input_shape == (4, 4, 1)
