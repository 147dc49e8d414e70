"""The one writer of a layer folder (store.LayerWriter, store.DiskSink): a batch's files and the manifest
that lists them agree after a failed write, the manifest records the seed images a run started from,
and --resume treats other seed images as any other changed option."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from filtervis import store
from filtervis.records import FilterRecord

SEEDED = ("--preprocess", "tf", "--layer", "conv2", "--filters", "0-3", "--steps", 6, "--batch", 2, "--quiet",
          "--no-report")


def record(index: int, value: int) -> FilterRecord:
    image = np.full((8, 8, 3), value, np.uint8)
    return FilterRecord(index, "done", 1.0, 0.1, True, 4, 0.5, image=image)


def manifest() -> dict:
    return {"layer": "conv", "params": {"cols": 8, "diversity": 1, "alpha": False}, "filters": []}


def test_a_batch_whose_manifest_cannot_be_written_is_taken_back(tmp_path):
    writer = store.LayerWriter(tmp_path / "conv", manifest())
    writer.add([record(0, 10), record(1, 20)])
    (tmp_path / "conv" / "blocked").mkdir()
    broken = store.LayerWriter(tmp_path / "conv", writer.manifest, name="blocked", entries=writer.entries)
    with pytest.raises(Exception):
        broken.add([record(2, 30)])  # the manifest's name is a folder: the rename fails
    assert sorted(broken.entries) == [0, 1]
    assert sorted(p.name for p in (tmp_path / "conv").glob("*.png")) == ["filter_0000.png", "filter_0001.png"]
    listed = json.loads((tmp_path / "conv" / "manifest.json").read_text())["filters"]
    assert [e["index"] for e in listed] == [0, 1]


def test_finish_writes_the_palette_of_the_part_and_says_whether_it_is_complete(tmp_path):
    writer = store.LayerWriter(tmp_path / "conv", manifest())
    writer.add([record(3, 40), record(1, 20)])
    writer.finish([1, 3, 5], "conv")
    written = json.loads((tmp_path / "conv" / "manifest.json").read_text())
    assert written["palette"] == "palette.png" and written["complete"] is False
    assert [e["index"] for e in written["filters"]] == [1, 3]
    assert Image.open(tmp_path / "conv" / "palette.png").size[0] > 16
    writer.add([record(5, 60)])
    writer.finish([1, 3, 5], "conv")
    assert json.loads((tmp_path / "conv" / "manifest.json").read_text())["complete"] is True


def seed_folder(folder, value: int):
    folder.mkdir(parents=True)
    for index in range(4):
        Image.fromarray(np.full((16, 16, 3), value + 20 * index, np.uint8)).save(folder / f"filter_{index:04d}.png")
    return folder


def test_the_manifest_records_the_seed_images_and_resume_refuses_others(tmp_path, tiny_model_file):
    from filtervis.seeds import read as read_starts

    seeds = seed_folder(tmp_path / "seeds", 40)
    out = tmp_path / "out"
    done = run_cli("run", "--model", tiny_model_file, *SEEDED, "--seed-image", seeds, "--out", out)
    assert done.returncode == 0, done.stderr
    written = json.loads((out / "conv2" / "manifest.json").read_text())
    assert written["params"]["seed_image"] == str(seeds)
    _, digests = read_starts(str(seeds), range(4), (16, 16, 3))
    assert {e["index"]: e["start_sha256"] for e in written["filters"]} == digests
    assert len(set(digests.values())) == 4  # one per start picture

    again = run_cli("run", "--model", tiny_model_file, *SEEDED, "--seed-image", seeds, "--out", out, "--resume")
    assert again.returncode == 0, again.stderr
    before = {p.name: p.read_bytes() for p in (out / "conv2").glob("filter_*.png")}

    seed_folder(tmp_path / "other", 90)
    for index in range(4):  # the same folder, other pictures
        (tmp_path / "other" / f"filter_{index:04d}.png").replace(seeds / f"filter_{index:04d}.png")
    refused = run_cli("run", "--model", tiny_model_file, *SEEDED, "--seed-image", seeds, "--out", out, "--resume")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "--seed-image" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert {p.name: p.read_bytes() for p in (out / "conv2").glob("filter_*.png")} == before  # nothing touched

    other = seed_folder(tmp_path / "third", 150)
    moved = run_cli("run", "--model", tiny_model_file, *SEEDED, "--seed-image", other, "--out", out, "--resume")
    assert moved.returncode == 2 and "--seed-image" in moved.stderr, moved.stderr


def test_a_seeded_render_saves_the_same_manifest_entries(tmp_path):
    """Result.save writes through the same writer: the start pictures' digests are there too."""
    import filtervis
    from conftest import tiny_conv_model

    seed = tmp_path / "seed.png"
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(seed)
    result = filtervis.render(tiny_conv_model(), "conv2", "0-1", steps=4, preprocess="tf", seed_image=str(seed))
    folder = result.save(tmp_path / "out")
    written = json.loads((folder / "manifest.json").read_text())
    start = np.asarray(Image.open(seed).convert("RGB"), np.float32) / 255.0
    expected = hashlib.sha256(np.ascontiguousarray(start, np.float32).tobytes()).hexdigest()
    assert [e["start_sha256"] for e in written["filters"]] == [expected, expected]
    assert written["params"]["seed_image"] == str(seed) and written["complete"] is True
