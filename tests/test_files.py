import json

import numpy as np
import pytest
from PIL import Image

from filtervis import files
from filtervis.errors import OutputError


@pytest.mark.parametrize("path, expected", [
    ("block1_conv2", "block1_conv2"),
    ("outer/inner", "outer__inner"),
    ("../../etc", "..__..__etc"),
    ("..", "layer___"),
    ("a b:c", "a_b_c"),
])
def test_layer_dirname_is_one_safe_component(path, expected):
    name = files.layer_dirname(path)
    assert name == expected and "/" not in name and name not in (".", "..")


def test_write_png_and_manifest_leave_no_temporary_files(tmp_path):
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    files.write_png(tmp_path / "sub" / "a.png", image)
    files.write_manifest(tmp_path / "sub", {"filters": [1]})
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.png", "manifest.json"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sub" / "a.png")), image)
    assert json.loads((tmp_path / "sub" / "manifest.json").read_text()) == {"filters": [1]}


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        files.atomic_write(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


def test_check_writable_accepts_new_nested_folder_and_creates_nothing(tmp_path):
    files.check_writable(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_rejects_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        files.check_writable(tmp_path / "f")
    with pytest.raises(OutputError, match="is a file"):
        files.check_writable(tmp_path / "f" / "sub")


# --- safety: names that cannot escape, writes that are whole or absent, shard file names ----------

@pytest.mark.parametrize("path", ["../../etc/passwd", "/abs/olute", "..", ".", "a/../../b", "x" * 400,
                                  "name\x00with\nnewline", "C:\\windows"])
def test_layer_folders_always_land_directly_inside_out(tmp_path, path):
    name = files.layer_dirname(path)
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    assert 0 < len(name) <= files.MAX_DIRNAME


def test_long_layer_names_stay_distinct():
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert files.layer_dirname(a) != files.layer_dirname(b)


def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inside").write_text("x")  # a non-empty folder cannot be replaced by a file
    (tmp_path / "old.png").write_bytes(b"old")
    with pytest.raises(OutputError, match="cannot write .*taken"):
        files.atomic_write(tmp_path / "taken", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png", "taken"]
    assert (tmp_path / "old.png").read_bytes() == b"old"


def test_shard_file_names_and_manifest_order(tmp_path):
    assert files.manifest_name(None) == "manifest.json" and files.palette_name((2, 8)) == "palette.shard-2-of-8.png"
    for name in ("manifest.shard-10-of-12.json", "manifest.shard-2-of-12.json", "manifest.json",
                 "manifest.shard-x-of-2.json"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in files.manifest_files(tmp_path)] == [
        "manifest.json", "manifest.shard-2-of-12.json", "manifest.shard-10-of-12.json"]


@pytest.mark.parametrize("text", ["{ half", "[1, 2]", '{"filters": 3, "params": {}}', "\xff"])
def test_read_manifest_rejects_what_filtervis_did_not_write(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text, encoding="latin-1")
    with pytest.raises(OutputError, match="manifest"):
        files.read_manifest(tmp_path / "manifest.json")


# --- PNGs of 1, 3 or 4 channels, non-square -----------------------------------------------------

@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB"), (4, "RGBA")])
def test_png_round_trip_keeps_channels_and_values(tmp_path, channels, mode):
    image = np.random.default_rng(channels).integers(0, 256, (5, 9, channels), dtype=np.uint8)  # non-square
    files.write_png(tmp_path / "a.png", image)
    with Image.open(tmp_path / "a.png") as png:
        assert png.mode == mode and png.size == (9, 5)
    back = files.read_png(tmp_path / "a.png")
    assert back.shape == (5, 9, channels) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, image)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # atomic: no temporary left


@pytest.mark.parametrize("mode, pixel, expected", [
    ("P", 1, [10, 20, 30]),  # palette index 1
    ("LA", (90, 40), [90, 90, 90]),  # grey with alpha: alpha dropped
    ("1", 1, [255, 255, 255]),
])
def test_read_png_turns_other_modes_into_rgb(tmp_path, mode, pixel, expected):
    picture = Image.new(mode, (3, 2), pixel)
    if mode == "P":
        picture.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    picture.save(tmp_path / "a.png")
    np.testing.assert_array_equal(files.read_png(tmp_path / "a.png"), np.broadcast_to(expected, (2, 3, 3)))


@pytest.mark.parametrize("image", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8),
                                   np.zeros((4, 4, 3), np.float32)])
def test_write_png_refuses_what_is_not_an_image_and_writes_nothing(tmp_path, image):
    with pytest.raises(ValueError, match="an image must be"):
        files.write_png(tmp_path / "a.png", image)
    assert list(tmp_path.iterdir()) == []
