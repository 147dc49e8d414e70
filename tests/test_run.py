"""Unattended runs through the real CLI: interrupt and resume, determinism, shards and stitch, NaN faults.

One tiny 16-filter model (saved to a .keras file) serves every test; a module-scoped reference run is
what the other runs must reproduce byte for byte.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

FILTERS = 16
SIZE = 24
STEPS = 160  # long enough that a batch takes a moment, so a signal can land between batches
BASE = ("--preprocess", "tf", "--layer", "conv2", "--steps", STEPS, "--size", SIZE, "--quiet", "--tile")


def wide_model():
    """Input(any size, 3) -> conv(8, relu) 'conv1' -> conv(16, relu) 'conv2' -> GAP -> Dense(2). It takes
    any size, so its runs (at SIZE, with --tile) start every picture as a half-size tile (tiles.py)."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(FILTERS, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "wide.keras"
    wide_model().save(path)
    return path


@pytest.fixture(scope="module")
def reference(model_file, tmp_path_factory):
    """An uninterrupted run, --batch 4: {file name: bytes} of its layer folder's PNGs."""
    out = tmp_path_factory.mktemp("reference")
    result = run_cli("run", "--model", model_file, *BASE, "--batch", 4, "--out", out)
    assert result.returncode == 0, result.stderr
    tile = json.loads((out / "conv2" / "manifest.json").read_text())["tile"]
    assert tile == {"size": SIZE // 2, "steps": 120, "lr_factor": 2.0}  # the runs are tiled
    return pngs(out / "conv2")


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.png"))}


def filter_pngs(folder: Path) -> dict[str, bytes]:
    return {name: data for name, data in pngs(folder).items() if name.startswith("filter_")}


def assert_manifest_matches_disk(folder: Path, name: str = "manifest.json") -> dict:
    """Every filter PNG the manifest lists is on disk, and every filter PNG on disk of the manifest's
    `part` is listed; no temporary file is left. Shard manifests share a folder, so a PNG of another
    part is no error; for manifest.json every filter PNG in the folder must be listed."""
    manifest = json.loads((folder / name).read_text())
    part = set(manifest["part"])
    with_file = [e for e in manifest["filters"] if e["file"] is not None]
    assert {e["index"] for e in manifest["filters"]} <= part
    assert all(e["file"] == f"filter_{e['index']:04d}.png" and e["status"] in ("done", "dead") for e in with_file)
    assert all(e["status"] == "failed" for e in manifest["filters"] if e["file"] is None)
    listed = {e["file"] for e in with_file}
    on_disk = set(filter_pngs(folder))
    assert listed <= on_disk, f"{name} lists missing PNGs {sorted(listed - on_disk)}"
    ours = {file for file in on_disk if int(file.removeprefix("filter_").removesuffix(".png")) in part}
    assert ours <= listed, f"{name} does not list {sorted(ours - listed)} of its part"
    if name == "manifest.json":
        assert on_disk == listed, f"{name} does not list {sorted(on_disk - listed)}"
    assert not list(folder.glob(".*.tmp"))
    return manifest


def test_the_manifest_check_holds_a_shard_to_its_own_part(tmp_path):
    """assert_manifest_matches_disk on hand-made folders: a shard manifest must list every PNG of its
    part and find every PNG it lists; PNGs of another part beside it are no error."""
    def entry(index):
        return {"index": index, "status": "done", "file": f"filter_{index:04d}.png"}

    (tmp_path / "manifest.shard-1-of-2.json").write_text(json.dumps({"part": [0, 2], "filters": [entry(0), entry(2)]}))
    for index in (0, 1, 2, 3):  # 1 and 3: the other part's
        (tmp_path / f"filter_{index:04d}.png").write_bytes(b"")
    assert_manifest_matches_disk(tmp_path, "manifest.shard-1-of-2.json")
    with pytest.raises(AssertionError):  # manifest.json must list every filter PNG in its folder
        (tmp_path / "manifest.json").write_text(json.dumps({"part": [0, 1, 2, 3], "filters": [entry(0), entry(2)]}))
        assert_manifest_matches_disk(tmp_path)
    (tmp_path / "manifest.shard-1-of-2.json").write_text(json.dumps({"part": [0, 2], "filters": [entry(0)]}))
    with pytest.raises(AssertionError, match=r"does not list \['filter_0002.png'\] of its part"):
        assert_manifest_matches_disk(tmp_path, "manifest.shard-1-of-2.json")
    (tmp_path / "manifest.shard-1-of-2.json").write_text(json.dumps({"part": [0, 2], "filters": [entry(0), entry(2)]}))
    (tmp_path / "filter_0002.png").unlink()
    with pytest.raises(AssertionError, match=r"lists missing PNGs \['filter_0002.png'\]"):
        assert_manifest_matches_disk(tmp_path, "manifest.shard-1-of-2.json")


def start_cli(*args) -> subprocess.Popen:
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "filtervis", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def signal_after_first_batch(process: subprocess.Popen, manifest: Path, number: int, timeout: float = 300):
    """Send signal `number` as soon as the manifest shows a finished batch; returns (code, stdout, stderr)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads(manifest.read_text())["filters"]:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted: " + process.stderr.read()
    process.send_signal(number)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_two_runs_of_one_command_give_identical_pngs(model_file, reference, tmp_path):
    result = run_cli("run", "--model", model_file, *BASE, "--batch", 4, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert pngs(tmp_path / "conv2") == reference
    manifest = json.loads((tmp_path / "conv2" / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["complete"] and len(manifest["filters"]) == FILTERS


@pytest.mark.parametrize("batch", [3, 16])  # 16: every per-image vector fills the CPU's widest SIMD register
def test_every_batch_size_gives_the_same_pngs(model_file, reference, tmp_path, batch):
    result = run_cli("run", "--model", model_file, *BASE, "--batch", batch, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert pngs(tmp_path / "conv2") == reference  # the filters' PNGs and the palette


def test_sigint_after_first_batch_then_resume_finishes_the_run(model_file, reference, tmp_path):
    args = ("run", "--model", model_file, *BASE, "--batch", 4, "--out", tmp_path)
    folder = tmp_path / "conv2"
    code, _, err = signal_after_first_batch(start_cli(*args), folder / "manifest.json", signal.SIGINT)
    assert code == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted by SIGINT" in lines[0] and "Traceback" not in err
    assert lines[0].endswith("--resume") and "resume with: filtervis run" in lines[0]
    manifest = assert_manifest_matches_disk(folder)
    first = filter_pngs(folder)
    assert 4 <= len(first) < FILTERS and len(first) % 4 == 0  # whole batches only
    assert not manifest["complete"] and manifest["palette"] == "palette.png"
    assert all(reference[name] == data for name, data in first.items())

    refused = run_cli(*args[:-2], "--out", tmp_path, "--steps", STEPS + 1, "--resume")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "--steps=160 (this run: 161)" in refused.stderr
    assert filter_pngs(folder) == first

    resumed = run_cli("run", "--model", model_file, *BASE, "--out", tmp_path, "--resume")  # batch from the manifest
    assert resumed.returncode == 0, resumed.stderr
    manifest = assert_manifest_matches_disk(folder)
    assert sorted(e["index"] for e in manifest["filters"]) == list(range(FILTERS)) and manifest["complete"]
    after = pngs(folder)
    assert all(after[name] == data for name, data in first.items())
    assert after == reference  # every filter PNG and the palette


def test_sigterm_exits_143_and_keeps_whole_batches(model_file, tmp_path):
    args = ("run", "--model", model_file, *BASE, "--batch", 8, "--out", tmp_path)
    code, _, err = signal_after_first_batch(start_cli(*args), tmp_path / "conv2" / "manifest.json", signal.SIGTERM)
    assert code == 143, err
    assert "interrupted by SIGTERM" in err and len(err.strip().splitlines()) == 1
    manifest = assert_manifest_matches_disk(tmp_path / "conv2")
    assert len(manifest["filters"]) == 8


def test_shards_into_one_folder_stitch_to_the_unsharded_run(model_file, reference, tmp_path, cli):
    out = tmp_path / "out"
    folder = out / "conv2"
    for shard, batch in (("1/2", 4), ("2/2", 4)):  # same batch shape as the reference, other companions
        result = cli("run", "--model", model_file, *BASE, "--batch", batch, "--shard", shard, "--out", out)
        assert result.returncode == 0, result.stderr
        assert_manifest_matches_disk(folder, f"manifest.shard-{shard.replace('/', '-of-')}.json")
    for name in ("manifest.shard-1-of-2.json", "manifest.shard-2-of-2.json"):  # beside the other part's PNGs
        assert_manifest_matches_disk(folder, name)
    part1 = json.loads((folder / "manifest.shard-1-of-2.json").read_text())
    part2 = json.loads((folder / "manifest.shard-2-of-2.json").read_text())
    assert set(part1["part"]).isdisjoint(part2["part"])
    assert sorted(part1["part"] + part2["part"]) == list(range(FILTERS))

    result = cli("stitch", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"conv2: {FILTERS}/{FILTERS} filters -> {folder}"
    manifest = assert_manifest_matches_disk(folder)
    assert [e["index"] for e in manifest["filters"]] == list(range(FILTERS)) and manifest["complete"]
    assert filter_pngs(folder) == filter_pngs_of(reference)
    assert (folder / "palette.png").read_bytes() == reference["palette.png"]

    # the same parts in two folders (two machines): one alone is incomplete, --from completes it
    first, second = tmp_path / "machine1", tmp_path / "machine2"
    for target, shard in ((first, part1), (second, part2)):
        (target / "conv2").mkdir(parents=True)
        name = f"manifest.shard-{shard['shard'].replace('/', '-of-')}.json"
        shutil.copy(folder / name, target / "conv2" / name)
        for index in shard["part"]:
            shutil.copy(folder / f"filter_{index:04d}.png", target / "conv2")
        assert_manifest_matches_disk(target / "conv2", name)
    alone = cli("stitch", first)
    assert alone.returncode == 3
    assert "8 filters missing (1, 3, 5" in alone.stderr and "part 2/2" in alone.stderr
    # a part of another command (its manifest says --steps 161) is refused, nothing is written
    edited = json.loads((second / "conv2" / name).read_text())
    edited["params"]["steps"] = STEPS + 1
    (second / "conv2" / name).write_text(json.dumps(edited))
    before = (first / "conv2" / "manifest.json").read_bytes()
    refused = cli("stitch", first, "--from", second)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert f"({'--steps'}={STEPS + 1}) with" in refused.stderr and f"(--steps={STEPS})" in refused.stderr
    assert (first / "conv2" / "manifest.json").read_bytes() == before
    shutil.copy(folder / name, second / "conv2" / name)
    merged = cli("stitch", first, "--from", second)
    assert merged.returncode == 0, merged.stderr
    assert_manifest_matches_disk(first / "conv2")
    assert_manifest_matches_disk(first / "conv2", "manifest.shard-1-of-2.json")  # now beside part 2's PNGs
    assert pngs(first / "conv2") == {**filter_pngs_of(reference), "palette.png": reference["palette.png"]}


def filter_pngs_of(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if name.startswith("filter_")}


FAULTY_MODULE = '''
import keras
import tensorflow as tf


class Faulty(keras.layers.Layer):
    """3 channels: red (fine); green, NaN once its mean passes 0.5 (a big step gets there); always NaN.
    NaN enters through tf.where, so no NaN reaches the gradients of the other channels."""

    def call(self, x):
        green = x[..., 1]
        mean = tf.reduce_mean(green, axis=[1, 2], keepdims=True)
        green = tf.where(mean > 0.5, float("nan"), green)
        return tf.stack([x[..., 0], green, tf.where(True, float("nan"), x[..., 2])], axis=-1)


def build():
    inputs = keras.Input((16, 16, 3))
    return keras.Model(inputs, Faulty(name="faulty")(inputs))
'''


def test_nan_filter_is_restarted_once_then_marked_failed_while_others_go_on(tmp_path, cli):
    (tmp_path / "faulty_model.py").write_text(FAULTY_MODULE)  # `python -m` finds it in the working folder
    result = cli("run", "--model", "faulty_model:build", "--weights", "none", "--preprocess", "tf",
                 "--layer", "faulty", "--steps", 32, "--jitter", 0, "--out", tmp_path / "out", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / "faulty"
    manifest = assert_manifest_matches_disk(folder)
    entries = {e["index"]: e for e in manifest["filters"]}
    assert entries[0]["status"] == "done" and not entries[0]["restarted"]
    assert entries[1]["status"] == "done" and entries[1]["restarted"]
    assert entries[2]["status"] == "failed" and entries[2]["file"] is None
    assert set(filter_pngs(folder)) == {"filter_0000.png", "filter_0001.png"}
    assert (folder / "palette.png").is_file()
    assert "1 filter hit NaN/Inf even after a restart with a smaller step (2)" in result.stderr


@pytest.mark.parametrize("text, expected", [("1/2", (1, 2)), (" 3 / 4 ", (3, 4)), ("0/2", None), ("3/2", None),
                                            ("1/0", None), ("1", None), ("a/b", None), ("-1/2", None)])
def test_parse_shard(text, expected):
    from filtervis.options import parse_shard
    from filtervis.errors import SpecError

    if expected is None:
        with pytest.raises(SpecError, match="--shard"):
            parse_shard(text)
    else:
        assert parse_shard(text) == expected
