"""A whole model in one command: `--layer all` and patterns, `--filters` resolved per layer, one run's
shards over every (layer, filter) pair stitched back, the model overview, render() and the callback
on patterns. Tiny models built here; the CLI in a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, tiny_conv_model

FAST = ("--preprocess", "unit", "--steps", "4", "--no-rescue", "--quiet")
# tiny_conv_model: conv1 (4 filters) -> conv2 (6) -> gap (6 units) -> probs (3 classes)
LAYERS = ["conv1", "conv2", "gap", "probs"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_conv_model().save(path)
    return path


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _pngs(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.png"))}


def test_layer_all_renders_every_listed_layer_in_the_models_order_and_clips_filters(model_file, tmp_path):
    listed = run_cli("layers", "--model", model_file, "--preprocess", "unit")
    lines = listed.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "type"])
    rows = [line.split()[0] for line in lines[header + 1:]]
    assert rows == LAYERS
    out = tmp_path / "out"
    result = run_cli("run", "--model", model_file, *FAST, "--layer", "all", "--filters", "0-4", "--out", out)
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == LAYERS  # rendered in the model's order
    for layer, count in zip(LAYERS, (4, 6, 6, 3)):
        manifest = _manifest(out / layer)
        assert manifest["planned"] == list(range(min(5, count)))
        assert ("clipped" in manifest) == (count < 5)  # the manifest says what was left out
        assert manifest["model"]["layer_order"] == LAYERS.index(layer) + 1  # (the input layer is 0)
    page = (out / "index.html").read_text()
    rows = [page.index(f'<tr data-layer="{layer}">') for layer in LAYERS]
    assert rows == sorted(rows)  # the overview lists the layers in the model's order


def test_patterns_pick_layers_and_explicit_layers_still_refuse_missing_filters(model_file, tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", "--model", model_file, *FAST, "--layer", "conv*", "--filters", "first:5", "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["conv1", "conv2"]
    assert _manifest(out / "conv1")["planned"] == [0, 1, 2, 3] and _manifest(out / "conv2")["planned"] == [0, 1, 2, 3, 4]

    named = run_cli("run", "--model", model_file, *FAST, "--layer", "conv1", "--filters", "0-5", "--out", tmp_path / "x")
    assert named.returncode == 2 and "filter index 4 is past the 4 filters of layer 'conv1'" in named.stderr
    nothing = run_cli("run", "--model", model_file, *FAST, "--layer", "cnov*", "--out", tmp_path / "y")
    assert nothing.returncode == 2 and len(nothing.stderr.strip().splitlines()) == 1
    assert "matches no layer" in nothing.stderr and "conv1" in nothing.stderr  # the closest layers
    assert "Traceback" not in nothing.stderr and not (tmp_path / "y").exists()


def test_a_model_with_nothing_to_visualize_says_so(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Reshape((8, 8, 3, 1))(inputs)).save(tmp_path / "volume.keras")  # 5-D output
    result = run_cli("run", "--model", tmp_path / "volume.keras", *FAST, "--layer", "all", "--out", tmp_path / "out")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "no layer with channels or units to visualize" in result.stderr and not (tmp_path / "out").exists()


def test_random_filters_are_drawn_per_layer():
    """A layer's draw depends on the seed and its name only: adding a layer changes no other's."""
    from filtervis.filters import parse_filters

    spec = parse_filters("random:4")
    draws = {layer: spec.resolve(64, 0, layer) for layer in ("block1_conv1", "block2_conv1")}
    assert draws["block1_conv1"] != draws["block2_conv1"]
    assert draws["block1_conv1"] == spec.resolve(64, 0, "block1_conv1")
    assert spec.resolve(3, 0, "small", clip=True) == [0, 1, 2]
    with pytest.raises(Exception, match="random:3 or fewer"):
        spec.resolve(3, 0, "small")


def test_shards_of_a_whole_model_stitch_to_the_unsharded_run_byte_for_byte(model_file, tmp_path):
    common = ("--model", model_file, *FAST, "--layer", "all", "--filters", "all", "--batch", "2")
    whole = run_cli("run", *common, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    for k in (1, 2, 3):
        part = run_cli("run", *common, "--shard", f"{k}/3", "--out", tmp_path / "parts")
        assert part.returncode == 0, part.stderr
    for layer in LAYERS:  # every shard wrote a manifest into every layer folder; the parts cover the layer
        parts = [_manifest_part(tmp_path / "parts", layer, k) for k in (1, 2, 3)]
        assert sorted(sum(parts, ())) == _manifest(tmp_path / "whole" / layer)["planned"]
    stitched = run_cli("stitch", tmp_path / "parts")
    assert stitched.returncode == 0, stitched.stderr
    whole_pngs = _pngs(tmp_path / "whole")
    stitched_pngs = {k: v for k, v in _pngs(tmp_path / "parts").items() if ".shard-" not in k}
    assert stitched_pngs.keys() == whole_pngs.keys() and stitched_pngs == whole_pngs


def _manifest_part(out: Path, layer: str, k: int) -> tuple:
    """The filters shard K of 3 rendered of `layer`."""
    return tuple(json.loads((out / layer / f"manifest.shard-{k}-of-3.json").read_text())["part"])


def test_render_all_returns_one_result_per_layer_in_order_and_the_callback_takes_patterns(tmp_path):
    import keras

    import filtervis
    from filtervis.keras import FilterCallback

    model = tiny_conv_model()
    results = filtervis.render(model, "all", filters="first:2", steps=4, rescue=False, preprocess="unit")
    assert list(results) == LAYERS
    assert all(len(r.images) == 2 and r.layer == name for name, r in results.items())
    single = filtervis.render(model, "conv2", filters="first:2", steps=4, rescue=False, preprocess="unit")
    np.testing.assert_array_equal(single.images[0], results["conv2"].images[0])

    watch = FilterCallback("conv*", "0-1", out=tmp_path / "epochs", steps=2, rescue=False, preprocess="unit")
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(np.zeros((2, 16, 16, 3), np.float32), np.zeros(2), epochs=1, verbose=0, callbacks=[watch])
    assert [p.parent.name for p in watch.written] == ["conv1", "conv2"]
