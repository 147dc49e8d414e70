"""Memory planning: --memory-budget's values, the batch that fits a budget, the refusal when one image
cannot, and a real run's peak under its budget."""

import json

import pytest

from conftest import tiny_conv_model
from filtervis import memory, models, options as config
from filtervis.errors import SpecError

IMAGE = (16, 16, 3)


def _shapes():
    """Output shapes of the tiny model's layers up to conv2, as `run` plans them."""
    shapes = models.layer_shapes(tiny_conv_model())
    return [shapes[p] for p in list(shapes)[:list(shapes).index("conv2") + 1]]


def test_values_count_every_output_up_to_the_layer():
    assert memory.activation_values(_shapes(), IMAGE) == 16 * 16 * (3 + 4 + 6)
    assert memory.activation_values([None, (2,)], (4, 5, 1)) == 20  # at least the image


def test_auto_batch_respects_the_budget():
    shapes = _shapes()
    per_image = memory.bytes_per_image(shapes, IMAGE)
    assert per_image >= 16 * 16 * (3 + 4 + 6) * 4
    assert memory.auto_batch(shapes, IMAGE, 100, budget=per_image * 3) == 3
    assert memory.auto_batch(shapes, IMAGE, 2, budget=per_image * 100) == 2
    assert memory.auto_batch(shapes, IMAGE, 100, budget=1) == 1


def test_memory_plan_fits_the_budget_and_refuses_what_cannot_fit():
    shapes = _shapes()
    per_image = memory.bytes_per_image(shapes, IMAGE)
    base = memory.resident_memory()
    fixed = memory.SCALE_IMAGES * memory.activation_values(shapes, IMAGE) * 4 + memory.RUNTIME_MARGIN
    plan = memory.plan_memory(shapes, IMAGE, 100, budget=base + fixed + 3 * per_image + per_image // 2)
    assert plan.batch == 3 and plan.peak <= plan.budget
    assert memory.plan_memory(shapes, IMAGE, 5, budget=base + 2**30).batch == 5
    assert memory.plan_memory(shapes, IMAGE, 100, budget=base + 2**30).batch == memory.MAX_AUTO_BATCH
    with pytest.raises(SpecError, match="raise --memory-budget or lower --size"):
        memory.plan_memory(shapes, IMAGE, 100, budget=1024)


@pytest.mark.parametrize("text, expected", [("auto", None), ("4G", 4 * 2**30), ("512m", 512 * 2**20),
                                            ("1.5GB", int(1.5 * 2**30)), ("2048", 2048)])
def test_memory_budget_values(text, expected):
    assert config.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "4X"])
def test_bad_memory_budget_values(text):
    with pytest.raises(SpecError, match="--memory-budget"):
        config.parse_bytes(text)


def test_cli_memory_budget_too_small_is_one_line(cli, tiny_model_file, tmp_path):
    out = tmp_path / "out"
    done = cli("run", "--model", tiny_model_file, "--preprocess", "tf", "--layer", "conv2", "--steps", "2",
               "--memory-budget", "1M", "--out", out)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("filtervis: error: one image of 16x16 px needs about")
    assert not (out / "conv2").exists()


@pytest.mark.integration
def test_vgg16_peak_memory_stays_under_the_printed_budget(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The run is started by a small Python that reports its child's peak: a child this (large) test
    # process spawns itself (vfork) counts this process's resident memory in its own peak.
    starter = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    with open(tmp_path / "stderr", "w") as stderr:
        done = subprocess.run([sys.executable, "-c", starter, sys.executable, "-m", "filtervis", "run", "--weights",
                               "hed", "--layer", "block5_conv3", "--size", "96", "--filters", "0-7", "--steps", "2",
                               "--memory-budget", "1.6G", "--out", str(tmp_path / "out")],
                              stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
    assert done.returncode == 0, (tmp_path / "stderr").read_text()
    peak = int(done.stdout.split()[-1]) * 1024  # KB on Linux
    plan = json.loads((tmp_path / "out" / "block5_conv3" / "manifest.json").read_text())["memory"]
    assert plan["budget"] == int(1.6 * 2**30)
    assert 0 < peak <= plan["budget"]
