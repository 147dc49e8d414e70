"""index.html and diff.html opened from the file system in headless Chromium (Debian's package), read
from the rendered DOM over the DevTools protocol (tests/browser.py).

Without Chromium these tests skip on a developer's machine and fail in CI (CI=true), where .ci/run
installs it.
"""

from __future__ import annotations

import json
import os

import pytest

from browser import Browser, find_chromium
from filtervis.records import filter_status
from test_report import dead_filter_model, render

CHROMIUM = find_chromium()
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM, "CI needs chromium: .ci/run installs it with apt-get"
    with Browser(CHROMIUM) as opened:
        yield opened


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(OLD, NEW) of a 4-filter layer whose filter 1 is dead (OLD) or failed (NEW, --no-rescue)."""
    root = tmp_path_factory.mktemp("browser")
    dead_filter_model().save(root / "dead.keras")
    return render(root / "dead.keras", root / "old"), render(root / "dead.keras", root / "new", seed=1, rescue=False)


VISIBLE_CARDS = "[...document.querySelectorAll('.card')].filter(c => c.offsetParent !== null).map(c => +c.dataset.index)"
UNLOADED = "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))"


@pytest.mark.parametrize("which", [0, 1], ids=["dead", "failed"])
def test_index_loads_every_image_counts_match_the_manifest_and_the_filter_shows_only_unconverged(
        browser, runs, which):
    out = runs[which]
    entries = json.loads((out / "conv" / "manifest.json").read_text())["filters"]
    statuses = {int(e["index"]): filter_status(e) for e in entries}  # (the rule itself: test_report.py)
    assert statuses[1] == ("dead", "failed")[which]
    browser.open((out / "index.html").as_uri())
    assert browser.evaluate("document.querySelectorAll('section img').length") == len(statuses) + 1  # + palette
    assert browser.evaluate(UNLOADED) == []
    counts = browser.evaluate("Object.fromEntries([...document.querySelectorAll('[data-count]')]"
                              ".map(e => [e.dataset.count, +e.textContent]))")
    assert counts == {s: list(statuses.values()).count(s) for s in ("converged", "rescued", "dead", "unwinnable",
                                                                      "failed")}
    shown = browser.evaluate("Object.fromEntries([...document.querySelectorAll('.card')]"
                             ".map(c => [c.dataset.index, c.dataset.status]))")
    assert {int(k): v for k, v in shown.items()} == statuses
    assert browser.evaluate(VISIBLE_CARDS) == sorted(statuses)

    browser.evaluate("document.getElementById('only-unconverged').click()")
    unconverged = [i for i, s in statuses.items() if s in ("dead", "failed")]
    assert unconverged and browser.evaluate(VISIBLE_CARDS) == unconverged
    browser.evaluate("document.getElementById('only-unconverged').click()")
    assert browser.evaluate(VISIBLE_CARDS) == sorted(statuses)


def test_diff_page_loads_both_sides_of_every_filter_in_the_ranked_order(browser, runs):
    from filtervis.diff import compare, summary, write_diff

    old, new = runs
    diffs = compare(old, new)
    page = write_diff(old, new, diffs, "pixel")
    ranked = [c["index"] for c in summary(old, new, diffs, "pixel", page)["layers"][0]["changes"]]
    browser.open(page.as_uri())
    assert browser.evaluate(UNLOADED) == []
    assert browser.evaluate("document.images.length") == 2 * len(ranked)
    assert browser.evaluate("[...document.querySelectorAll('tr.change')].map(r => +r.dataset.index)") == ranked
    assert browser.evaluate("document.querySelector('tr.change td:nth-child(5)').textContent.trim()") \
        == f"{diffs[0].changes[0].distance:.4g}"


def test_the_model_overview_lists_every_layer_in_order_and_every_image_loads(browser, tmp_path):
    from conftest import run_cli, tiny_conv_model

    tiny_conv_model().save(tmp_path / "tiny.keras")
    out = tmp_path / "out"
    result = run_cli("run", "--model", tmp_path / "tiny.keras", "--preprocess", "unit", "--layer", "all",
                     "--filters", "random:2", "--steps", "4", "--no-rescue", "--quiet", "--out", out)
    assert result.returncode == 0, result.stderr
    browser.open((out / "index.html").as_uri())
    assert browser.evaluate(UNLOADED) == []
    rows = browser.evaluate("[...document.querySelectorAll('table.overview tr[data-layer]')].map(r => r.dataset.layer)")
    assert rows == ["conv1", "conv2", "gap", "probs"]  # the model's order
    strips = browser.evaluate("[...document.querySelectorAll('table.overview tr[data-layer]')]"
                              ".map(r => r.querySelectorAll('.strip img').length)")
    assert strips == [2, 2, 2, 2]
    targets = browser.evaluate("[...document.querySelectorAll('table.overview tr[data-layer] td:first-child a')]"
                               ".map(a => document.getElementById(a.getAttribute('href').slice(1)) !== null)")
    assert targets == [True] * 4  # each row links to its layer's section
