"""The README's "From Python" snippets run as they are written (real VGG16 `--weights hed`, a real fit)."""

import re
import subprocess
import sys

import pytest

from conftest import ROOT


def _python_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


def test_the_from_python_section_has_the_three_uses():
    blocks = _python_blocks("From Python")
    assert len(blocks) == 3
    assert "filtervis.render(" in blocks[0] and "objective=" in blocks[1] and "FilterCallback(" in blocks[2]


@pytest.mark.integration
@pytest.mark.parametrize("number", [0, 1, 2])
def test_each_from_python_snippet_runs(tmp_path, number):
    block = _python_blocks("From Python")[number]
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    if number == 0:
        assert (tmp_path / "block3_conv1.png").is_file()
        assert sorted(p.name for p in (tmp_path / "out" / "block3_conv1").iterdir()) == [
            "filter_0000.png", "filter_0001.png", "filter_0002.png", "filter_0003.png", "manifest.json", "palette.png"]
        assert len(done.stdout.strip().splitlines()) == 4
    if number == 2:
        assert sorted(p.name for p in (tmp_path / "epochs" / "conv1").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
        assert list((tmp_path / "logs").iterdir())
