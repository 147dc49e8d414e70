import json

import numpy as np
import pytest
from PIL import Image

from filtervis import outputs
from filtervis.errors import OutputError


@pytest.mark.parametrize("path, expected", [
    ("block1_conv2", "block1_conv2"),
    ("outer/inner", "outer__inner"),
    ("../../etc", "..__..__etc"),
    ("..", "layer___"),
    ("a b:c", "a_b_c"),
])
def test_layer_dirname_is_one_safe_component(path, expected):
    name = outputs.layer_dirname(path)
    assert name == expected and "/" not in name and name not in (".", "..")


def test_write_png_and_manifest_leave_no_temporary_files(tmp_path):
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    outputs.write_png(tmp_path / "sub" / "a.png", image)
    outputs.write_manifest(tmp_path / "sub", {"filters": [1]})
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.png", "manifest.json"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sub" / "a.png")), image)
    assert json.loads((tmp_path / "sub" / "manifest.json").read_text()) == {"filters": [1]}


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        outputs.atomic_write(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


def test_check_writable_accepts_new_nested_folder_and_creates_nothing(tmp_path):
    outputs.check_writable(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_rejects_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        outputs.check_writable(tmp_path / "f")
    with pytest.raises(OutputError, match="is a file"):
        outputs.check_writable(tmp_path / "f" / "sub")
