"""The CLI flags of the quality work, through a real subprocess on a tiny model file."""

import json

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


def test_class_visualization_on_a_softmax_dense_layer(cli, tiny_model_file, tmp_path):
    result = cli("run", "--model", tiny_model_file, "--preprocess", "tf", "--layer", "probs", "--filters", "1",
                 "--steps", "16", "--objective", "neuron", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "probs" / "manifest.json").read_text())
    assert manifest["params"]["param"] == "fft"  # auto: a Dense layer is deep
    assert [f["index"] for f in manifest["filters"]] == [1]


def test_a_bad_choice_is_one_line_and_exit_2(cli, tiny_model_file, tmp_path):
    result = cli("run", "--model", tiny_model_file, "--preprocess", "tf", "--layer", "conv2",
                 "--param", "wavelet", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.startswith("filtervis: error:") and "wavelet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
