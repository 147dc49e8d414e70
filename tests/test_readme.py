"""The README and docs/ as a user meets them: the "From Python" snippets run as they are written and
do what their comments say (real VGG16 `--weights hed`, a real fit); the options table lists exactly
the options of `filtervis run`, with their defaults; every relative link and image resolves."""

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _section(section: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]


def _python_blocks(section: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", _section(section), re.S)


def _run_snippet(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
                          timeout=900)


# What each snippet's comments promise, checked after it ran. Snippet 1 prints no file, so the test
# appends a line that prints what it left in memory.
_REPORT = '\nimport json as _json; print(_json.dumps({"shapes": [list(i.shape) for i in result.images], ' \
          '"activations": [r.activation for r in result.filters]}))\n'


def _check_render_and_save(tmp_path, stdout):
    lines = stdout.strip().splitlines()
    assert len(lines) == 4  # one record per filter of "0-3"
    for index, line in enumerate(lines):
        assert line.startswith(f"{index} ") and line.endswith("(96, 96, 3)"), line
    assert (tmp_path / "block3_conv1.png").is_file()
    assert sorted(p.name for p in (tmp_path / "out" / "block3_conv1").iterdir()) == [
        "filter_0000.png", "filter_0001.png", "filter_0002.png", "filter_0003.png", "manifest.json", "palette.png"]
    manifest = json.loads((tmp_path / "out" / "block3_conv1" / "manifest.json").read_text())
    assert [f["index"] for f in manifest["filters"]] == [0, 1, 2, 3]


def _check_objectives(tmp_path, stdout):
    *_, score_line, report_line = stdout.strip().splitlines()
    report = json.loads(report_line)
    assert report["shapes"] == [[96, 96, 3]] * 3  # one picture per objective
    score = float(score_line.strip("[] "))  # evaluate: one number per image
    assert score == pytest.approx(report["activations"][0], rel=1e-3, abs=1e-3)  # "record 0's activation"
    assert score > 0  # the picture drives filter 3 more than half of filter 7


def _check_callback(tmp_path, stdout):
    assert sorted(p.name for p in (tmp_path / "epochs" / "conv1").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    assert "epochs/conv1/epoch_0001.png" in stdout and "epochs/conv1/epoch_0002.png" in stdout  # watch.written
    assert list((tmp_path / "logs").iterdir())  # the TensorBoard image summaries


SNIPPET_CHECKS = [(_check_render_and_save, ""), (_check_objectives, _REPORT), (_check_callback, "")]


def test_every_from_python_snippet_has_a_check():
    assert len(_python_blocks("From Python")) == len(SNIPPET_CHECKS)


@pytest.mark.integration
@pytest.mark.parametrize("number", range(len(SNIPPET_CHECKS)))
def test_each_from_python_snippet_runs_and_does_what_it_says(tmp_path, number):
    check, epilogue = SNIPPET_CHECKS[number]
    done = _run_snippet(_python_blocks("From Python")[number] + epilogue, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    check(tmp_path, done.stdout)


def _run_command():
    from filtervis.cli import cli

    return cli.commands["run"]


def _options_table() -> dict[str, str]:
    """Option -> the table's default cell, from the README's Options table."""
    rows = {}
    for line in _section("Options").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or not cells[0].startswith("`--"):
            continue
        names = re.findall(r"--[a-z][a-z-]*", cells[0])
        defaults = cells[1].split(" / ") if len(names) > 1 else [cells[1]]
        assert len(defaults) == len(names), line
        rows.update(zip(names, defaults))
    return rows


def test_the_options_table_lists_only_options_of_filtervis_run():
    """The table may leave an option to `filtervis run --help` (a new option is one row in options.py),
    but never lists one that does not exist."""
    table = _options_table()
    params = [p for p in _run_command().params if p.param_type_name == "option"]
    names = {name for p in params for name in [*p.opts, *p.secondary_opts]}
    assert set(table) <= names, f"not options of `filtervis run`: {sorted(set(table) - names)}"


def test_the_options_table_gives_the_defaults_of_filtervis_run():
    table = _options_table()
    for param in _run_command().params:
        cells = [table[n] for n in [*param.opts, *param.secondary_opts] if n in table]
        if not cells:
            continue
        cell = re.sub(r"\s*\(.*\)$", "", cells[0].replace("`", "")).strip()
        if getattr(param, "is_flag", False):
            assert (cell.endswith(" on") if param.default is True else cell == "off"), (param.name, cells[0])
        elif isinstance(param.default, bool) or not isinstance(param.default, (int, float, str)) \
                or not re.fullmatch(r"[\w.-]+", cell):
            continue  # no default, or one said in words ("model's input size, else 224")
        elif isinstance(param.default, (int, float)):
            assert float(cell) == float(param.default), (param.name, cells[0], param.default)
        else:
            assert cell == str(param.default), (param.name, cells[0], param.default)


def _markdown_outside_code(path) -> str:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M),
                              re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=[p.relative_to(ROOT).as_posix() for p in DOCS])
def test_every_relative_link_and_image_resolves(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _markdown_outside_code(doc)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)
