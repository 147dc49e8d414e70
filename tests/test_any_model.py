"""Any Keras model through the real CLI: grey and RGBA inputs, non-square sizes, subclassed and
multi-input models, custom preprocessing, unusual layer kinds, float16, class heads and legacy files.

Models are tiny, built here and saved to .keras/.h5 files, or built by factories in a module written
to a temporary folder that the CLI subprocess imports (`--model anymodels:NAME`). Random weights
never judge picture quality: these tests check shapes, modes, what the manifest records, values
measured on the PNGs read back, and classification on a head designed for it.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

FACTORIES = '''
"""Tiny models for `--model anymodels:NAME`, and preprocessing functions for `--preprocess`."""
import keras
import numpy as np


def _head(x, units=3):
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.layers.Dense(units, activation="softmax", name="probs")(x)


def any_size():
    """Input (None, None, 3): takes any image size."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    return keras.Model(inputs, _head(x), name="any_size")


class Sub(keras.Model):
    """Layers made in __init__, wired in call: no graph to cut, so layers are captured."""

    def __init__(self):
        super().__init__(name="sub")
        self.conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
        self.pool = keras.layers.GlobalAveragePooling2D(name="gap")
        self.dense = keras.layers.Dense(3, name="dense")

    def call(self, x):
        return self.dense(self.pool(self.conv(x)))


def subclassed():
    keras.utils.set_random_seed(2)
    model = Sub()
    model(np.zeros((1, 16, 16, 3), np.float32))  # built by calling it once
    return model


def zoo():
    """One of each layer kind that is not a plain Conv2D + ReLU, each named after its kind."""
    keras.utils.set_random_seed(3)
    L = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    skip = L.PReLU(shared_axes=[1, 2], name="prelu")(x)
    x = L.SeparableConv2D(4, 3, padding="same", name="sep")(skip)
    x = L.LeakyReLU(negative_slope=0.1, name="leaky")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Activation("gelu", name="gelu")(x)
    x = L.Add(name="add")([x, skip])
    x = L.Activation("swish", name="swish")(x)
    return keras.Model(inputs, _head(x), name="zoo")


def mixed():
    """A conv model built under the mixed_float16 policy (float16 compute, float32 variables)."""
    keras.utils.set_random_seed(4)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
        x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        outputs = keras.layers.Dense(3, activation="softmax", name="probs", dtype="float32")(x)
        return keras.Model(inputs, outputs, name="mixed")
    finally:
        keras.mixed_precision.set_global_policy("float32")


def as_tf(images):
    """The 'tf' preprocessing written out: [0, 1] -> [-1, 1]."""
    return images * 2.0 - 1.0
'''


@pytest.fixture(scope="module")
def factory_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("factories")
    (folder / "anymodels.py").write_text(FACTORIES)
    return folder


@pytest.fixture
def cli_with(factory_dir, monkeypatch):
    """run_cli with the factories' folder on PYTHONPATH (run_cli keeps what is there)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(factory_dir), os.environ.get("PYTHONPATH", "")]))
    return run_cli


def conv_model(shape, name="model", seed=1):
    """Input `shape` (H, W, C) 'pixels' -> Conv2D(4, relu) 'conv' -> GAP -> Dense(3, softmax) 'probs'."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape, name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x), name=name)


def run_ok(cli, *args, **kwargs):
    result = cli("run", "--steps", 8, "--quiet", *args, **kwargs)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def pngs(folder):
    return sorted(folder.glob("filter_*.png"))


def check_entries(folder, size, mode, converged):
    """The manifest's entries in `folder`: each has its PNG (`file`) there, `size` (width, height) in `mode`;
    a finite activation, for a channel raised above what noise gives (a class converges when its picture is
    put in it: its margin can stay where noise puts it); status 'done' when it converged ('dead' only when
    nothing fired it: random weights; 'unwinnable' a class no picture won). The filters in `converged` did
    converge. Returns the entries."""
    record = manifest(folder)
    entries = record["filters"]
    for entry in entries:
        assert entry["file"] and (folder / entry["file"]).is_file(), entry  # not failed: NaN/Inf has no PNG
        with Image.open(folder / entry["file"]) as image:
            assert (image.mode, image.size) == (mode, size), entry["file"]
        assert math.isfinite(entry["activation"]), entry
        if not record["model"]["classes"]:
            assert entry["activation"] > entry["noise_activation"], entry
        if entry["converged"]:
            assert entry["status"] == "done", entry
        if entry["status"] == "dead":
            assert not entry["converged"] and entry["peak_preactivation"] <= 0, entry
        if entry["status"] == "unwinnable":
            assert not entry["converged"] and entry["best_lead"] <= 0, entry
    assert {e["index"] for e in entries if e["converged"]} >= set(converged), entries
    return entries


def conv_means(model, layer, batch):
    """[N, C] spatial means of `layer`'s output for a float32 NHWC batch already preprocessed."""
    import keras

    cut = keras.Model(model.inputs, model.get_layer(layer).output)
    return np.asarray(cut([batch])).mean(axis=(1, 2))


def as_batch(files):
    """uint8 PNGs read back as float32 [N, H, W, C] in 0-255 (grey keeps a channel axis)."""
    arrays = [np.asarray(Image.open(f)) for f in files]
    return np.stack([a[..., None] if a.ndim == 2 else a for a in arrays]).astype(np.float32)


# --- channels ------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels, mode", [(1, "L"), (4, "RGBA")])
@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_grey_and_rgba_models_write_pngs_and_palette_in_their_own_mode(tmp_path, channels, mode, param):
    path = tmp_path / f"c{channels}.keras"
    conv_model((16, 16, channels)).save(path)
    run_ok(run_cli, "--model", path, "--preprocess", "tf", "--layer", "conv", "--param", param,
           "--out", tmp_path / "o")
    folder = tmp_path / "o" / "conv"
    files = pngs(folder)
    assert [f.name for f in files] == [f"filter_{i:04d}.png" for i in range(4)]
    for f in files:
        with Image.open(f) as image:
            assert (image.mode, image.size) == (mode, (16, 16))
    with Image.open(folder / "palette.png") as palette:
        assert palette.mode == mode
    record = manifest(folder)
    assert record["model"]["channels"] == channels and record["params"]["param"] == param
    check_entries(folder, (16, 16), mode, converged=range(4))  # every filter, with the rescue


# --- sizes ---------------------------------------------------------------------------------------

def test_non_square_model_renders_at_its_own_width_and_height(tmp_path):
    path = tmp_path / "wide.keras"
    conv_model((12, 20, 3)).save(path)
    run_ok(run_cli, "--model", path, "--preprocess", "tf", "--layer", "conv", "--filters", "0-1",
           "--out", tmp_path / "o")
    folder = tmp_path / "o" / "conv"
    for f in pngs(folder):
        with Image.open(f) as image:
            assert image.size == (20, 12)  # Pillow: (width, height)
    record = manifest(folder)
    assert record["model"]["input_size"] == "20x12" and record["params"]["size"] == "20x12"


def test_size_wxh_on_a_model_of_any_size_is_width_by_height(cli_with, tmp_path):
    run_ok(cli_with, "--model", "anymodels:any_size", "--preprocess", "tf", "--layer", "conv", "--filters", "0",
           "--size", "24x16", "--out", tmp_path / "o")
    folder = tmp_path / "o" / "conv"
    with Image.open(folder / "filter_0000.png") as image:
        assert image.size == (24, 16)
    assert manifest(folder)["params"]["size"] == "24x16"


# --- subclassed and multi-input models ---------------------------------------------------------

def test_subclassed_model_from_a_factory_renders_a_conv_and_a_dense_layer(cli_with, tmp_path):
    run_ok(cli_with, "--model", "anymodels:subclassed", "--preprocess", "tf", "--layer", "conv",
           "--layer", "dense", "--out", tmp_path / "o")
    conv, dense = manifest(tmp_path / "o" / "conv"), manifest(tmp_path / "o" / "dense")
    assert [e["index"] for e in conv["filters"]] == [0, 1, 2, 3] and conv["model"]["layer_kind"] == "channels"
    assert [e["index"] for e in dense["filters"]] == [0, 1, 2] and dense["model"]["layer_kind"] == "units"
    assert not dense["model"]["classes"]  # a linear Dense: units, not competing classes
    assert len(pngs(tmp_path / "o" / "dense")) == 3


def test_multi_input_model_needs_input_naming_the_image_input(odd_model, tmp_path):
    path = odd_model("two_inputs")  # 'image' (16, 16, 3) with a Conv2D 'conv', and 'meta' (4,)
    refused = run_cli("run", "--model", path, "--preprocess", "tf", "--layer", "conv", "--steps", 2,
                      "--out", tmp_path / "refused")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--input" in lines[0] and "image" in lines[0] and "meta" in lines[0], lines
    assert not (tmp_path / "refused").exists()
    run_ok(run_cli, "--model", path, "--preprocess", "tf", "--input", "image", "--layer", "conv",
           "--filters", "0-1", "--out", tmp_path / "o")
    record = manifest(tmp_path / "o" / "conv")
    assert record["model"]["input"] == "image" and len(pngs(tmp_path / "o" / "conv")) == 2


# --- preprocessing -------------------------------------------------------------------------------

def test_preprocess_unit_feeds_pixels_in_0_1(tmp_path):
    path = tmp_path / "m.keras"
    model = conv_model((16, 16, 3))
    model.save(path)
    run_ok(run_cli, "--model", path, "--preprocess", "unit", "--layer", "conv", "--filters", "0-1",
           "--out", tmp_path / "o")
    folder = tmp_path / "o" / "conv"
    record = manifest(folder)
    assert record["model"]["preprocess"] == "unit"
    means = conv_means(model, "conv", as_batch(pngs(folder)) / 255.0)
    for row, entry in enumerate(record["filters"]):
        assert means[row, entry["index"]] == pytest.approx(entry["activation"], rel=1e-3, abs=1e-4)


def test_preprocess_callable_is_used_and_recorded(cli_with, tmp_path):
    path = tmp_path / "m.keras"
    model = conv_model((16, 16, 3))
    model.save(path)
    run_ok(cli_with, "--model", path, "--preprocess", "anymodels:as_tf", "--layer", "conv", "--filters", "0-1",
           "--out", tmp_path / "o")
    folder = tmp_path / "o" / "conv"
    record = manifest(folder)
    assert record["model"]["preprocess"] == "anymodels:as_tf"
    batch = as_batch(pngs(folder))
    as_tf, as_unit = conv_means(model, "conv", batch / 127.5 - 1.0), conv_means(model, "conv", batch / 255.0)
    for row, entry in enumerate(record["filters"]):  # measured through the callable, not another mode
        assert as_tf[row, entry["index"]] == pytest.approx(entry["activation"], rel=1e-3, abs=1e-4)
        assert as_unit[row, entry["index"]] != pytest.approx(entry["activation"], rel=1e-2, abs=1e-3)


# --- layer kinds and dtypes ----------------------------------------------------------------------

ZOO_LAYERS = ("bn", "sep", "leaky", "dw", "gelu", "add", "swish")


def test_every_layer_kind_renders(cli_with, tmp_path):
    layers = [arg for name in ZOO_LAYERS for arg in ("--layer", name)]
    result = run_ok(cli_with, "--model", "anymodels:zoo", "--preprocess", "tf", *layers, "--filters", "0-1",
                    "--out", tmp_path / "o")
    for name in ZOO_LAYERS:
        assert f"{name}: " in result.stdout
        entries = check_entries(tmp_path / "o" / name, (16, 16), "RGB", converged=[0])  # 1 may stay weak at 8 steps
        assert [e["index"] for e in entries] == [0, 1], name
        assert len(pngs(tmp_path / "o" / name)) == 2


def test_prelu_layer_with_per_channel_alpha_renders(cli_with, tmp_path):
    run_ok(cli_with, "--model", "anymodels:zoo", "--preprocess", "tf", "--layer", "prelu", "--filters", "0-1",
           "--out", tmp_path / "o")
    check_entries(tmp_path / "o" / "prelu", (16, 16), "RGB", converged=[0, 1])
    assert len(pngs(tmp_path / "o" / "prelu")) == 2


def test_mixed_float16_model_renders_without_nan(cli_with, tmp_path):
    result = run_ok(cli_with, "--model", "anymodels:mixed", "--preprocess", "tf", "--layer", "conv2",
                    "--layer", "probs", "--out", tmp_path / "o")
    assert "NaN" not in result.stderr
    # float16 gradients still take every conv2 filter to convergence; of the random head's classes, 0 does
    for name, count, converged in (("conv2", 6, range(6)), ("probs", 3, [0])):
        entries = check_entries(tmp_path / "o" / name, (16, 16), "RGB", converged)
        assert len(entries) == count and len(pngs(tmp_path / "o" / name)) == count
        for entry in entries:
            assert not entry["restarted"]  # restarted: it hit NaN/Inf
            assert all(math.isfinite(entry[key]) for key in ("activation", "loss", "noise_activation"))


# --- classes -------------------------------------------------------------------------------------

def correlated_head(classes=5):
    """conv(8, relu) -> GAP -> Dense(classes, softmax) 'probs' whose kernel columns share one large
    common direction: whatever raises one logit raises them all, so only a margin between the classes
    (not one logit alone) makes an image its class."""
    import keras

    keras.utils.set_random_seed(6)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    dense = keras.layers.Dense(classes, activation="softmax", name="probs")
    model = keras.Model(inputs, dense(x), name="correlated")
    rng = np.random.default_rng(6)
    common = np.abs(rng.normal(size=(8, 1))) * 3.0
    kernel = common + 0.3 * rng.normal(size=(8, classes))
    dense.set_weights([kernel.astype(np.float32), np.zeros(classes, np.float32)])
    return model


def test_class_images_of_a_correlated_head_are_each_their_own_class(tmp_path):
    model = correlated_head()
    path = tmp_path / "head.keras"
    model.save(path)
    run_ok(run_cli, "--model", path, "--preprocess", "tf", "--layer", "probs", "--steps", 64,
           "--out", tmp_path / "o")
    folder = tmp_path / "o" / "probs"
    record = manifest(folder)
    assert record["model"]["classes"] is True
    files = pngs(folder)
    assert len(files) == 5
    predicted = np.asarray(model(as_batch(files) / 127.5 - 1.0)).argmax(axis=1)
    assert predicted.tolist() == [0, 1, 2, 3, 4]


def unreachable_class_head(shift):
    """conv(4, relu) -> GAP -> Dense(3, softmax) 'probs' whose class 2 can never win: the features are
    0 or more, classes 0 and 1 weigh them positively, class 2 ignores them with a bias 1 lower. `shift`
    is added to every logit, which changes neither the softmax nor any class margin."""
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    dense = keras.layers.Dense(3, activation="softmax", name="probs")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(x)))
    kernel = np.abs(np.random.default_rng(7).normal(size=(4, 3))).astype(np.float32)
    kernel[:, 2] = 0.0
    dense.set_weights([kernel, np.array([0.0, 0.0, -1.0], np.float32) + shift])
    return model


def test_class_status_does_not_depend_on_a_common_logit_shift(tmp_path):
    records = {}
    for shift in (0.0, 50.0):
        path = tmp_path / f"head{shift:g}.keras"
        unreachable_class_head(shift).save(path)
        run_ok(run_cli, "--model", path, "--preprocess", "tf", "--layer", "probs", "--filters", "2",
               "--out", tmp_path / f"o{shift:g}")
        records[shift] = manifest(tmp_path / f"o{shift:g}" / "probs")["filters"]
    assert not records[0.0][0]["converged"] and records[0.0][0]["status"] == "unwinnable"  # class 2 cannot win
    unshifted, shifted = ([(e["status"], e["steps"]) for e in records[k]] for k in (0.0, 50.0))
    assert unshifted == shifted


def close_race_head():
    """Input 16x16x3 -> GAP -> Dense(5, softmax) 'probs', weights set by hand: with 'tf' preprocessing
    (colour means r, g in [-1, 1]) the logits are 4r, 4r + 1, 4g + 1, 4g + 0.9 and 4g + 0.9. Class 0
    always trails class 1 and classes 3 and 4 always trail class 2: no picture puts them first. Class 1
    wins red pictures; class 2 wins green ones, but always with a probability below 1/2 (two runners-up
    0.1 behind), so its margin stays below 0 when it wins."""
    import keras

    inputs = keras.Input((16, 16, 3))
    dense = keras.layers.Dense(5, activation="softmax", name="probs")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    kernel = np.zeros((3, 5), np.float32)
    kernel[0, :2], kernel[1, 2:] = 4.0, 4.0
    dense.set_weights([kernel, np.array([0.0, 1.0, 1.0, 0.9, 0.9], np.float32)])
    return model


def test_a_class_converges_when_its_picture_is_put_in_it_and_one_no_picture_can_win_is_unwinnable(tmp_path):
    model = close_race_head()
    path = tmp_path / "race.keras"
    model.save(path)
    result = run_ok(run_cli, "--model", path, "--preprocess", "tf", "--layer", "probs", "--steps", 32,
                    "--out", tmp_path / "o")
    assert "probs: 2/5 filters converged, 3 unwinnable -> " in result.stdout
    assert "dead" not in result.stdout  # a class is never dead: nothing about it needs to fire
    folder = tmp_path / "o" / "probs"
    entries = manifest(folder)["filters"]
    predicted = np.asarray(model(as_batch(pngs(folder)) / 127.5 - 1.0)).argmax(axis=1)
    for entry, winner in zip(entries, predicted):
        assert entry["converged"] == (winner == entry["index"]), (entry, winner)
    assert [e["status"] for e in entries] == ["unwinnable", "done", "done", "unwinnable", "unwinnable"]
    assert [e["index"] for e in entries if e["converged"]] == [1, 2]
    assert entries[2]["activation"] < 0  # class 2 won with a margin below 0: a probability below 1/2
    for entry, trail in ((entries[0], -1.0), (entries[3], -0.1), (entries[4], -0.1)):
        assert entry["rescued"] and not entry["converged"] and "peak_preactivation" not in entry
        assert entry["best_lead"] <= trail + 1e-4 and (folder / entry["file"]).is_file()
    page = (tmp_path / "o" / "index.html").read_text()
    assert page.count('data-status="unwinnable"') == 3 and 'data-status="dead"' not in page
    # without the rescue nothing tells an unwinnable class from one that was not tried hard enough
    run_ok(run_cli, "--model", path, "--preprocess", "tf", "--layer", "probs", "--steps", 32, "--no-rescue",
           "--out", tmp_path / "plain")
    diff = run_cli("diff", tmp_path / "plain", tmp_path / "o", "--json")
    assert diff.returncode == 0, diff.stderr
    changes = {c["index"]: c for c in json.loads(diff.stdout)["layers"][0]["changes"]}
    assert [(changes[i]["old_status"], changes[i]["new_status"]) for i in (0, 3, 4)] == [("failed", "unwinnable")] * 3


# --- legacy files --------------------------------------------------------------------------------

def test_hdf5_model_file_with_a_weights_only_file(tmp_path):
    """A legacy HDF5 file named .hdf5 loads, and --weights PATH replaces the weights it holds."""
    original = conv_model((16, 16, 3), seed=1)
    original.save(tmp_path / "m.h5")
    path = (tmp_path / "m.h5").rename(tmp_path / "m.hdf5")
    other = conv_model((16, 16, 3), seed=2)
    other.save_weights(tmp_path / "other.weights.h5")
    run_ok(run_cli, "--model", path, "--weights", tmp_path / "other.weights.h5", "--preprocess", "tf",
           "--layer", "conv", "--filters", "0-3", "--out", tmp_path / "o")
    folder = tmp_path / "o" / "conv"
    record = manifest(folder)
    assert record["model"]["weights"] == str(tmp_path / "other.weights.h5") and record["model"]["name"] == str(path)
    batch = as_batch(pngs(folder)) / 127.5 - 1.0
    with_other = np.diag(conv_means(other, "conv", batch))
    with_original = np.diag(conv_means(original, "conv", batch))
    recorded = np.array([e["activation"] for e in record["filters"]])
    np.testing.assert_allclose(with_other, recorded, rtol=1e-3, atol=1e-4)
    assert not np.allclose(with_original, recorded, rtol=1e-2, atol=1e-3)
