"""Bad input, tried systematically: one row per case, each through the real CLI in a subprocess.

Every row must give its documented exit code (2 for anything the user can fix), exactly one line on
stderr (`filtervis: error: ...` naming the fix), no traceback, and leave nothing new in --out. A
seed image of the wrong size is not an error: it is resized (exit 0).

Read-only and full disks are real mounts (a tmpfs remounted read-only, a 40 KiB tmpfs); they need
root and `mount`, and are skipped with the reason otherwise (tests run as root here, where file
permission bits do not stop writes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import odd_model_file, run_cli, tiny_conv_model

OK, USAGE = 0, 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs good and bad, made once: models, seed images, configs, an ordinary file."""
    import keras
    from PIL import Image

    root = tmp_path_factory.mktemp("inputs")
    tiny_conv_model().save(root / "tiny.keras")
    tiny_conv_model(64).save(root / "tiny64.keras")
    data = (root / "tiny.keras").read_bytes()
    (root / "empty.keras").write_bytes(b"")
    (root / "truncated.keras").write_bytes(data[: len(data) // 2])
    (root / "text.keras").write_text("this is not a model\n")
    (root / "model.txt").write_bytes(data)
    inputs = keras.Input((16, 16, 3))
    lam = keras.layers.Lambda(lambda x: x * 2.0, name="double")(inputs)
    keras.Model(inputs, keras.layers.Conv2D(2, 3, name="conv")(lam)).save(root / "lambda.keras")
    Image.new("RGB", (40, 24), (200, 30, 30)).save(root / "big.png")
    (root / "not_image.png").write_text("not a picture")
    (root / "plain_file").write_text("x")
    (root / "bad.toml").write_text("steps = = 3\n")
    (root / "unknown.toml").write_text("stepz = 3\n")
    (root / "badvalue.toml").write_text('steps = "many"\n')
    return root


def base(files, *extra):
    return ("run", "--model", files / "tiny.keras", "--preprocess", "tf", "--layer", "conv2",
            "--steps", 2, "--filters", "0", "--quiet", *extra)


# (id, args(files) -> tuple, exit code, text the stderr line must hold)
CASES = [
    ("unknown-flag", lambda f: base(f, "--bogus"), USAGE, "No such option '--bogus'"),
    ("steps-zero", lambda f: base(f, "--steps", 0), USAGE, "--steps must be 1 or more"),
    ("steps-not-a-number", lambda f: base(f, "--steps", "many"), USAGE, "'many' is not a valid integer"),
    ("batch-zero", lambda f: base(f, "--batch", 0), USAGE, "must be 1 or more"),
    ("lr-negative", lambda f: base(f, "--lr", -1), USAGE, "--lr must be above 0"),
    ("size-too-small", lambda f: base(f, "--size", 4), USAGE, "--size must be 8 or more"),
    ("no-layer", lambda f: ("run", "--model", f / "tiny.keras"), USAGE, "--layer is required"),
    ("filters-backwards", lambda f: base(f, "--filters", "5-2"), USAGE, "runs backwards"),
    ("filters-garbage", lambda f: base(f, "--filters", "a,b"), USAGE, "cannot read 'a'"),
    ("filters-random-zero", lambda f: base(f, "--filters", "random:0"), USAGE, "random needs 1 or more"),
    ("shard-past-n", lambda f: base(f, "--shard", "3/2"), USAGE, "K must be between 1 and N=2"),
    ("shard-zero", lambda f: base(f, "--shard", "0/2"), USAGE, "K must be between 1 and N=2"),
    ("shard-not-k-of-n", lambda f: base(f, "--shard", "half"), USAGE, "is not K/N"),
    ("preprocess-unknown", lambda f: base(f, "--preprocess", "bgr"), USAGE, "--preprocess must be one of unit"),
    ("config-missing", lambda f: base(f, "--config", f / "nope.toml"), USAGE, "does not exist"),
    ("config-not-toml", lambda f: base(f, "--config", f / "bad.toml"), USAGE, "is not valid TOML"),
    ("config-unknown-key", lambda f: base(f, "--config", f / "unknown.toml"), USAGE, "unknown key 'stepz'"),
    ("config-bad-value", lambda f: base(f, "--config", f / "badvalue.toml"), USAGE, "key 'steps'"),
    ("model-missing", lambda f: ("run", "--model", f / "nope.keras", "--layer", "conv2"), USAGE, "does not exist"),
    ("model-empty", lambda f: ("run", "--model", f / "empty.keras", "--layer", "conv2"), USAGE, "is empty"),
    ("model-truncated", lambda f: ("run", "--model", f / "truncated.keras", "--layer", "conv2"), USAGE,
     "is not a loadable Keras model"),
    ("model-not-keras", lambda f: ("run", "--model", f / "text.keras", "--layer", "conv2"), USAGE,
     "is not a loadable Keras model"),
    ("model-wrong-suffix", lambda f: ("run", "--model", f / "model.txt", "--layer", "conv2"), USAGE,
     "is not a .keras, .h5 or .hdf5 model file"),
    ("model-with-code", lambda f: ("run", "--model", f / "lambda.keras", "--preprocess", "tf", "--layer", "conv"),
     USAGE, "add --unsafe-model"),
    ("model-unknown-name", lambda f: ("run", "--model", "vgg17", "--layer", "block1_conv1"), USAGE,
     "did you mean vgg19, vgg16"),
    ("weights-missing", lambda f: base(f, "--weights", f / "nope.h5"), USAGE, "weights file"),
    ("layer-unknown", lambda f: base(f, "--layer", "conv3"), USAGE, "has no layer 'conv3' (closest: conv"),
    ("layer-no-channels", lambda f: base(f, "--layer", "pixels"), USAGE, "no channels or units"),
    ("filter-past-count", lambda f: base(f, "--filters", "9"), USAGE, "filter index 9 is past the 6 filters"),
    ("filters-random-too-many", lambda f: base(f, "--filters", "random:9"), USAGE, "has only 6"),
    ("seed-image-missing", lambda f: base(f, "--seed-image", f / "nope.png"), USAGE, "does not exist"),
    ("seed-image-not-an-image", lambda f: base(f, "--seed-image", f / "not_image.png"), USAGE,
     "is not a readable image"),
    ("seed-image-wrong-size", lambda f: base(f, "--seed-image", f / "big.png"), OK, ""),
    ("out-is-a-file", lambda f: base(f, "--out", f / "plain_file"), USAGE, "is a file, not a folder"),
    ("out-under-a-file", lambda f: base(f, "--out", f / "plain_file" / "sub"), USAGE, "is a file, not a folder"),
    ("stitch-no-manifest", lambda f: ("stitch", f / "empty_out"), USAGE, "no manifest found"),
    ("stitch-not-a-folder", lambda f: ("stitch", f / "plain_file"), USAGE, "is not a folder"),
    ("model-two-channels", lambda f: ("run", "--model", odd_model_file(f, "two_channel"), "--preprocess", "tf",
                                      "--layer", "conv", "--steps", 2, "--quiet"), USAGE,
     "takes 2-channel images; filtervis renders 1 (grayscale), 3 (RGB) or 4 (RGBA) channels"),
    ("preprocess-caffe-on-grey", lambda f: ("run", "--model", odd_model_file(f, "grey"), "--preprocess", "caffe",
                                            "--layer", "conv", "--steps", 2, "--quiet"), USAGE,
     "--preprocess caffe uses ImageNet's RGB statistics, but the model takes 1-channel images"),
    ("size-zero-wide", lambda f: base(f, "--size", "0x5"), USAGE, "--size must be 8 or more pixels each way"),
    ("size-not-a-size", lambda f: base(f, "--size", "abc"), USAGE, "'abc' is not a size"),
    ("multi-input-without-input", lambda f: ("run", "--model", odd_model_file(f, "two_inputs"), "--preprocess", "tf",
                                             "--layer", "conv", "--steps", 2, "--quiet"), USAGE,
     "has 2 inputs (image, meta); pick the image input with --input NAME"),
    ("input-unknown", lambda f: ("run", "--model", odd_model_file(f, "two_inputs"), "--preprocess", "tf",
                                 "--input", "photo", "--layer", "conv", "--steps", 2, "--quiet"), USAGE,
     "has no such input; its inputs are image, meta"),
    ("input-unknown-single", lambda f: base(f, "--input", "photo"), USAGE, "has one input, 'pixels'"),
    ("preprocess-no-module", lambda f: base(f, "--preprocess", "nosuchmodule:fn"), USAGE,
     "cannot import module 'nosuchmodule'"),
    ("diversity-zero", lambda f: base(f, "--diversity", 0), USAGE, "--diversity must be a whole number from 1 to 16"),
    ("diversity-too-many", lambda f: base(f, "--diversity", 17), USAGE, "from 1 to 16 (pictures per filter)"),
    ("param-unknown", lambda f: base(f, "--param", "phase"), USAGE, "'phase' is not one of 'auto', 'pixel', 'fft', 'maco'"),
]


def folder_state(folder: Path) -> dict:
    """{relative path: bytes} of every file under `folder` (empty if it does not exist)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_error_line(result, code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    if code != OK:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("filtervis: error: ") and text in lines[0], lines[0]


def _args(files, make_args, out):
    args = make_args(files)
    return (*args, "--out", out) if "--out" not in args and args[0] == "run" else args


@pytest.fixture(scope="module")
def outcomes(files, request, tmp_path_factory):
    """{case: (out folder, CompletedProcess)} for the selected rows, run side by side (one process per
    core): each row pays for a Python + TensorFlow start, so the table finishes in a fraction of the time."""
    selected = {item.callspec.params["case"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_bad_input" and hasattr(item, "callspec")}
    (files / "empty_out").mkdir(exist_ok=True)

    def one(case):
        name, make_args = case[0], case[1]
        out = tmp_path_factory.mktemp(name) / "out"
        return name, (out, run_cli(*_args(files, make_args, out)))

    rows = [case for case in CASES if case[0] in selected]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(pool.map(one, rows))


@pytest.mark.parametrize("case, make_args, code, text", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, make_args, code, text, outcomes):
    out, result = outcomes[case]
    assert_one_error_line(result, code, text)
    if code == OK:
        assert sorted(folder_state(out)) == ["conv2/filter_0000.png", "conv2/manifest.json", "conv2/palette.png",
                                           "index.html"]
    else:
        assert folder_state(out) == {}


def test_resume_refuses_a_corrupt_manifest_and_leaves_the_folder_as_it_was(files, tmp_path):
    folder = tmp_path / "out" / "conv2"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{ half a manifest")
    before = folder_state(tmp_path / "out")
    result = run_cli(*base(files, "--resume", "--out", tmp_path / "out"))
    assert_one_error_line(result, USAGE, "is not a readable manifest")
    assert folder_state(tmp_path / "out") == before


# --- real read-only and full disks ---------------------------------------------------------------

def _mount_tmpfs(target: Path, size: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount for a real tmpfs (permission bits do not stop root)")
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def mount_point(tmp_path):
    target = tmp_path / "mnt"
    yield target
    subprocess.run(["umount", str(target)], capture_output=True)


def test_read_only_out(files, mount_point):
    _mount_tmpfs(mount_point, "1m")
    done = subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    result = run_cli(*base(files, "--out", mount_point / "out"))
    assert_one_error_line(result, USAGE, "Read-only file system")
    assert folder_state(mount_point) == {}


def test_disk_full_keeps_whole_batches_listed_in_the_manifest(files, mount_point):
    _mount_tmpfs(mount_point, "40k")
    out = mount_point / "out"
    result = run_cli(*base(files, "--model", files / "tiny64.keras", "--filters", "all", "--batch", 1, "--out", out))
    assert_one_error_line(result, USAGE, "no space left on the device")
    assert "--resume" in result.stderr
    folder = out / "conv2"
    files_left = folder_state(folder)
    assert not [name for name in files_left if name.endswith(".tmp")]
    pngs = {name for name in files_left if name.startswith("filter_")}
    if "manifest.json" in files_left:
        listed = {e["file"] for e in json.loads(files_left["manifest.json"])["filters"]}
        assert listed == pngs and 0 < len(pngs) < 6
    else:
        assert pngs == set()


def test_unsafe_model_flag_lets_a_trusted_model_with_code_load(files, tmp_path):
    result = run_cli("run", "--model", files / "lambda.keras", "--unsafe-model", "--preprocess", "tf",
                     "--layer", "conv", "--steps", 2, "--quiet", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "conv" / "filter_0001.png").is_file()
