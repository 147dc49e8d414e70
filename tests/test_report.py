"""OUT/index.html, --json, --fail-on and `filtervis diff`, on real runs of a tiny model with one dead filter.

The runs are made in this process (filtervis.run.run) where only files matter, and through the real CLI
where stdout, stderr and exit codes are what is tested.
"""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

STEPS = 8


def dead_filter_model(size: int = 16):
    """Input(size, size, 3) -> Conv2D(4, relu) 'conv' whose filter 1 has zero weights and bias -1 (nothing
    fires it: dead) -> GAP -> Dense(2)."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., 1], bias[1] = 0.0, -1.0
    model.get_layer("conv").set_weights([kernel, bias])
    return model


def render(model_file, out, **options):
    """A real run into `out`, in this process; returns `out`."""
    from filtervis.options import RunSpec
    from filtervis.run import run

    settings = dict(model=str(model_file), weights="none", preprocess="tf", steps=STEPS, quiet=True, out=str(out))
    run(RunSpec(layers=("conv",), **{**settings, **options}))
    return Path(out)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "dead.keras"
    dead_filter_model().save(path)
    return path


@pytest.fixture(scope="module")
def runs(model_file, tmp_path_factory):
    """(OLD, NEW): the same layer and filters; OLD with the rescue (filter 1 is dead), NEW with --seed 1
    and --no-rescue (filter 1 did not converge: failed)."""
    root = tmp_path_factory.mktemp("runs")
    return render(model_file, root / "old"), render(model_file, root / "new", seed=1, rescue=False)


@pytest.fixture(scope="module")
def fewer(model_file, tmp_path_factory):
    """A run of filters 0-2 only, with --no-report."""
    return render(model_file, tmp_path_factory.mktemp("fewer"), filters="0-2", steps=2, rescue=False, report=False)


class _Page(HTMLParser):
    """The parts of a page the tests read: every img src, the filter cards, the warnings and the counts."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.cards, self.counts, self.warnings, self.sources = [], [], {}, [], []
        self._count, self._warning = None, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag in ("script", "link") and (attrs.get("src") or attrs.get("href")):
            self.sources.append(attrs.get("src") or attrs.get("href"))
        if "card" in attrs.get("class", "").split():
            self.cards.append(attrs)
        if "data-count" in attrs:
            self._count = (attrs["data-layer"], attrs["data-count"])
        if tag == "ul" and attrs.get("class") == "warnings":
            self._warning = True

    def handle_endtag(self, tag):
        if tag == "ul":
            self._warning = False

    def handle_data(self, data):
        if self._count:
            self.counts[self._count] = int(data)
            self._count = None
        if self._warning and data.strip():
            self.warnings.append(data.strip())


def page(out: Path) -> _Page:
    return _Page((out / "index.html").read_text())


def test_page_shows_every_filter_with_its_status_and_only_relative_images(runs):
    out = runs[0]
    manifest = json.loads((out / "conv" / "manifest.json").read_text())
    shown = page(out)
    assert {int(c["data-index"]): c["data-status"] for c in shown.cards} == {
        0: "converged", 1: "dead", 2: "converged", 3: "converged"}
    assert [c["class"].split()[-1] == "unconverged" for c in shown.cards] == [False, True, False, False]
    assert shown.counts == {("conv", "converged"): 3, ("conv", "rescued"): 0, ("conv", "dead"): 1,
                            ("conv", "unwinnable"): 0, ("conv", "failed"): 0}
    assert sorted(set(shown.images)) == ["conv/filter_0000.png", "conv/filter_0001.png", "conv/filter_0002.png",
                                         "conv/filter_0003.png", "conv/palette.png"]
    assert len(shown.images) == 4 + 1 + 4  # the cards, the palette, and the overview's strip of the layer
    assert all((out / src).is_file() for src in shown.images) and shown.sources == []
    assert shown.warnings == ["1 filter dead (1): nothing the rescue tried fired them"]
    text = (out / "index.html").read_text()
    assert "http://" not in text and "https://" not in text
    assert f"activation {manifest['filters'][0]['activation']:.4g}" in text
    assert f"steps {manifest['filters'][1]['steps']}" in text


def test_failed_filters_are_marked_and_warned_about(runs):
    shown = page(runs[1])
    assert {int(c["data-index"]): c["data-status"] for c in shown.cards} == {
        0: "converged", 1: "failed", 2: "converged", 3: "converged"}
    assert "unconverged" in shown.cards[1]["class"].split()
    assert shown.warnings == ["1 filter did not converge (1); try more --steps or another --param"]


def _record(index, status="done", converged=True, rescued=False, variant=None):
    """A filter's (or one --diversity picture's) FilterRecord as a run makes it: a failed one hit NaN/Inf
    (no activation, no PNG), a dead one never fired (peak pre-activation below 0), an unwinnable class never
    won (its best lead over the runner-up below 0)."""
    from filtervis.records import FilterRecord

    finite = status != "failed"
    return FilterRecord(index, status, 0.5 if finite else None, 0.1, converged, STEPS, 1.0, rescued=rescued,
                        restarted=not finite, peak_preactivation=-0.5 if status in ("dead", "unwinnable") else None,
                        variant=variant)


def _diverse(index, *pictures):
    """A --diversity filter's record over `pictures`, each (status, converged, rescued)."""
    from filtervis.records import group_record

    return group_record(index, [_record(index, *p, variant=k) for k, p in enumerate(pictures)])


# Each kind of manifest entry and the status the page and the summary must give it.
CASES = [
    (lambda i: _record(i), "converged"),  # converged on the first try
    (lambda i: _record(i, rescued=True), "rescued"),  # converged in the rescue
    (lambda i: _record(i, "dead", False, True), "dead"),  # nothing the rescue tried fired it
    (lambda i: _record(i, "done", False, True), "failed"),  # fired, but not clearly above noise
    (lambda i: _record(i, "failed", False), "failed"),  # NaN/Inf: no PNG
    (lambda i: _diverse(i, ("done", True, False), ("done", True, True)), "rescued"),  # one picture rescued
    (lambda i: _diverse(i, ("done", True, False), ("done", False, True)), "failed"),  # one picture weak
    (lambda i: _diverse(i, ("dead", False, True), ("dead", False, True)), "dead"),  # no picture fired it
    (lambda i: _diverse(i, ("dead", False, True), ("done", True, False)), "failed"),  # not every picture
    (lambda i: _diverse(i, ("done", True, False), ("failed", False, False)), "failed"),  # one picture NaN
    (lambda i: _record(i, "unwinnable", False, True), "unwinnable"),  # a class no picture was put in
    (lambda i: _diverse(i, ("unwinnable", False, True), ("unwinnable", False, True)), "unwinnable"),
]


def test_each_kind_of_entry_gets_its_status_on_the_page_and_in_the_summary(runs, tmp_path):
    from filtervis.report import read_views, summary, write_report

    out = tmp_path / "out"
    shutil.copytree(runs[0], out)
    manifest = json.loads((out / "conv" / "manifest.json").read_text())
    manifest.update(filters=[make(i).entry() for i, (make, _) in enumerate(CASES)], planned=list(range(len(CASES))))
    (out / "conv" / "manifest.json").write_text(json.dumps(manifest))
    write_report(out)
    shown = page(out)
    expected = {i: status for i, (_, status) in enumerate(CASES)}
    assert {int(c["data-index"]): c["data-status"] for c in shown.cards} == expected
    unconverged = [2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert [i for i, c in enumerate(shown.cards) if "unconverged" in c["class"].split()] == unconverged
    assert shown.counts == {("conv", "converged"): 1, ("conv", "rescued"): 2, ("conv", "dead"): 2,
                            ("conv", "unwinnable"): 2, ("conv", "failed"): 5}
    assert "conv/filter_0004.png" not in shown.images and "conv/filter_0005_0.png" in shown.images
    assert shown.warnings == [
        "3 filters did not converge (3, 6, 8); try more --steps or another --param",
        "2 filters hit NaN/Inf even after a restart with a smaller step (4, 9); no PNG",
        "2 filters dead (2, 7): nothing the rescue tried fired them",
        "2 classes unwinnable (10, 11): no picture the rescue tried was put in its class"]
    (layer,) = summary(read_views(out), out / "index.html", "dead")["layers"]
    assert {k: layer[k] for k in ("filters", "converged", "rescued", "dead", "unwinnable", "failed",
                                  "unconverged")} == {
        "filters": 12, "converged": 1, "rescued": 2, "dead": 2, "unwinnable": 2, "failed": 5,
        "unconverged": unconverged}
    assert summary(read_views(out), None, "dead")["failed_gate"]


def test_a_folder_with_a_broken_manifest_beside_the_run_is_left_off_the_page(runs, tmp_path):
    from filtervis.report import write_report

    out = tmp_path / "out"
    shutil.copytree(runs[0], out)
    (out / "broken").mkdir()
    (out / "broken" / "manifest.json").write_text("{ half a manifest")
    write_report(out)
    assert [c["data-index"] for c in page(out).cards] == ["0", "1", "2", "3"]


def test_no_report_writes_no_page(fewer):
    assert (fewer / "conv" / "manifest.json").is_file() and not (fewer / "index.html").exists()


def test_page_of_a_sharded_run_names_the_missing_part_and_stitch_completes_it(model_file, tmp_path):
    from filtervis.stitch import stitch

    render(model_file, tmp_path, shard=(1, 2), steps=2, rescue=False)
    half = page(tmp_path)
    assert [c["data-index"] for c in half.cards] == ["0", "2"]
    assert any("2 filters not finished (1, 3) (no manifest from part 2/2)" in w for w in half.warnings)
    render(model_file, tmp_path, shard=(2, 2), steps=2, rescue=False)
    assert [c["data-index"] for c in page(tmp_path).cards] == ["0", "1", "2", "3"]
    (tmp_path / "index.html").unlink()
    stitch(tmp_path)
    whole = page(tmp_path)
    assert [c["data-index"] for c in whole.cards] == ["0", "1", "2", "3"]
    assert "conv/palette.png" in whole.images and not any("not finished" in w for w in whole.warnings)


def test_fail_on_trips_on_the_chosen_condition_only(runs, fewer):
    from filtervis.report import failed_gate, read_views

    gates = ("never", "unconverged", "dead")
    assert [failed_gate(read_views(runs[0]), f) for f in gates] == [False, True, True]  # a dead filter
    assert [failed_gate(read_views(runs[1]), f) for f in gates] == [False, True, False]  # a failed one
    assert [failed_gate(read_views(fewer), f) for f in gates] == [False, True, False]  # 2 steps: 1 fails


def test_json_is_all_of_stdout_and_fail_on_unconverged_exits_4_after_writing(cli, model_file, tmp_path):
    result = cli("run", "--model", model_file, "--weights", "none", "--preprocess", "tf", "--layer", "conv",
                 "--steps", STEPS, "--no-rescue", "--out", tmp_path / "o", "--json", "--fail-on", "unconverged")
    assert result.returncode == 4, result.stderr
    document = json.loads(result.stdout)  # the whole of stdout is one JSON document
    manifest = json.loads((tmp_path / "o" / "conv" / "manifest.json").read_text())
    (layer,) = document["layers"]
    assert {k: layer[k] for k in ("converged", "rescued", "dead", "failed", "filters")} == {
        "converged": 3, "rescued": 0, "dead": 0, "failed": 1, "filters": 4}  # no rescue: dead filter 1 failed
    assert layer["unconverged"] == [1] and document["failed_gate"] and document["fail_on"] == "unconverged"
    assert layer["seconds"] == pytest.approx(sum(e["seconds"] for e in manifest["filters"]), abs=0.01)
    assert Path(document["index"]).is_file() and Path(layer["palette"]).is_file()
    assert Path(layer["manifest"]) == tmp_path / "o" / "conv" / "manifest.json"
    assert "Traceback" not in result.stderr


def rms(a: Path, b: Path) -> float:
    x = np.asarray(Image.open(a), dtype=np.float64) / 255
    y = np.asarray(Image.open(b), dtype=np.float64) / 255
    return float(np.sqrt(np.mean((x - y) ** 2)))


def test_pixel_diff_ranks_filters_by_rms_distance_and_gives_activation_changes(runs):
    from filtervis.diff import compare

    old, new = runs
    (layer,) = compare(old, new)
    distances = [c.distance for c in layer.changes]
    assert distances == sorted(distances, reverse=True) and sorted(c.index for c in layer.changes) == [0, 1, 2, 3]
    olds = {e["index"]: e for e in json.loads((old / "conv" / "manifest.json").read_text())["filters"]}
    news = {e["index"]: e for e in json.loads((new / "conv" / "manifest.json").read_text())["filters"]}
    for change in layer.changes:
        name = f"filter_{change.index:04d}.png"
        assert change.distance == pytest.approx(rms(old / "conv" / name, new / "conv" / name), abs=1e-6)
        assert change.activation_change == pytest.approx(news[change.index]["activation"]
                                                         - olds[change.index]["activation"], abs=1e-6)
    assert max(distances) > 0
    assert all(c.distance == 0 for c in compare(old, old)[0].changes)


def test_perceptual_diff_is_zero_for_the_same_pictures_and_positive_for_others(runs):
    from filtervis.diff import compare

    old, new = runs
    same = compare(old, old, "perceptual")[0].changes
    moved = compare(old, new, "perceptual")[0].changes
    assert all(c.distance == pytest.approx(0, abs=1e-9) for c in same)
    assert [c.distance for c in moved] == sorted((c.distance for c in moved), reverse=True)
    assert all(c.distance > 0 for c in moved if c.index != 1)


def test_perceptual_diff_without_the_model_says_to_use_pixel(runs, tmp_path):
    from filtervis.diff import compare
    from filtervis.errors import SpecError

    moved = tmp_path / "new"
    shutil.copytree(runs[1], moved)
    manifest = json.loads((moved / "conv" / "manifest.json").read_text())
    manifest["model"]["name"] = str(tmp_path / "gone.keras")
    (moved / "conv" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SpecError, match=r"--metric perceptual needs NEW's model .*gone\.keras.*use --metric pixel"):
        compare(runs[0], moved, "perceptual")


def test_diff_refuses_other_sizes(runs, tmp_path):
    from filtervis.diff import compare
    from filtervis.errors import SpecError

    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    manifest = json.loads((other / "conv" / "manifest.json").read_text())
    manifest["params"]["size"] = 24
    (other / "conv" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SpecError, match="OLD has size 16 and NEW has size 24; diff two runs of the same --size"):
        compare(runs[0], other)


def test_diff_cli_writes_page_and_json(cli, runs):
    old, new = runs
    result = cli("diff", old, new, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["html"] == str(new / "diff.html") and (new / "diff.html").is_file()
    ranked = document["layers"][0]["changes"]
    assert [c["distance"] for c in ranked] == sorted((c["distance"] for c in ranked), reverse=True)
    text = (new / "diff.html").read_text()
    assert text.count('class="change"') == 4 and "filter_0000.png" in text and "data:image/png;base64," in text


def test_diff_cli_refuses_other_filters_or_a_missing_folder_in_one_line(cli, runs, fewer, tmp_path):
    old = runs[0]
    refused = cli("diff", old, fewer)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("filtervis: error: cannot diff layer 'conv'")
    assert "only OLD has filter 3" in refused.stderr and not (fewer / "diff.html").exists()
    missing = cli("diff", old, tmp_path / "nowhere")
    assert missing.returncode == 2 and "NEW" in missing.stderr and "is not a folder" in missing.stderr
