"""The real pretrained VGG16 (`--weights hed`, offline) through the CLI, at small sizes."""

import json

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def vgg16_hed():
    from filtervis import models

    return models.load("vgg16", "hed", size=64).model


def _filter_means(model, layer, pixels):
    """[N, C] spatial means of `layer` for uint8 RGB images, preprocessed as Keras's VGG16 expects."""
    import keras

    cut = keras.Model(model.input, model.get_layer(layer).output)
    batch = keras.applications.vgg16.preprocess_input(np.stack(pixels).astype(np.float32))
    return np.asarray(cut(batch)).mean(axis=(1, 2))


def test_run_block1_conv2_pngs_drive_their_filters(cli, tmp_path, vgg16_hed):
    result = cli("run", "--model", "vgg16", "--weights", "hed", "--layer", "block1_conv2", "--filters", "0-7",
                 "--steps", "30", "--size", "64", "--out", tmp_path / "X")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "X" / "block1_conv2"
    files = [folder / f"filter_{i:04d}.png" for i in range(8)]
    assert all(f.is_file() for f in files) and (folder / "palette.png").is_file()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [f["index"] for f in manifest["filters"]] == list(range(8))
    pixels = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    noise = [np.random.default_rng(i).integers(0, 256, (64, 64, 3)).astype(np.uint8) for i in range(8)]
    means, noise_means = _filter_means(vgg16_hed, "block1_conv2", pixels), _filter_means(vgg16_hed, "block1_conv2", noise)
    for i in range(8):
        assert means[i, i] >= 2 * noise_means[i, i] and means[i, i] > 0
        assert means[i, i] == pytest.approx(manifest["filters"][i]["activation"], rel=1e-3)


def test_the_default_start_gives_pictures_that_are_not_copies_of_a_smaller_one(cli, tmp_path):
    """The default pictures are each one picture at every place (`--tile`, a half-size tile repeated
    2 x 2, scores 0.9 or more here), and converged."""
    from filtervis import appearance

    result = cli("run", "--weights", "hed", "--layer", "block3_conv1", "--filters", "0-3", "--steps", "32",
                 "--size", "64", "--quiet", "--no-report", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "block3_conv1" / "manifest.json").read_text())
    assert manifest["tile"] is None and all(f["converged"] for f in manifest["filters"])
    pictures = [np.asarray(Image.open(tmp_path / "block3_conv1" / f["file"]).convert("RGB"))
                for f in manifest["filters"]]
    repeats = [appearance.repeat(p) for p in pictures]
    assert max(repeats) < 0.4, repeats


def test_layers_lists_block5_conv3_with_512_filters(cli):
    result = cli("layers", "--model", "vgg16", "--weights", "hed")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "model vgg16: input (None, 224, 224, 3): 3 channels (RGB)"
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["block5_conv3"][1] == "Conv2D" and rows["block5_conv3"][-2:] == ["512", "channels"]
    assert rows["block1_conv1"][-2:] == ["64", "channels"]
