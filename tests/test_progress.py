"""Progress of a run (progress.py): the time estimate of one layer and of a whole run, and the --shard
parts of equal cost."""

import io
import time

import pytest


def test_a_long_layer_gets_a_time_estimate(capsys):
    from tqdm import tqdm

    from filtervis.progress import Progress

    with tqdm(total=512 * 256, file=io.StringIO()) as bar:
        progress = Progress(bar, "block5_conv3", 512, [("block5_conv3", 512 * 256, 1.0)], "batch 8", quiet=False)
        progress(8 * 16)  # the first chunk (tracing) is not timed
        time.sleep(0.1)
        progress(8 * 16)  # ~0.1 s per 128 filter-steps: about 100 s for the rest
        progress(8 * 16)
    assert bar.n == 3 * 8 * 16 and "~" in bar.desc
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("filtervis: block5_conv3: 512 filters, batch 8: ~")


def test_a_whole_run_is_estimated_by_each_layers_step_cost_and_start_up():
    """Layer b's steps cost 4x layer a's; a's clean chunks take 0.05 s per 100 steps and its first
    chunk 0.3 s more (tracing): the estimate after a's second chunk is a's 800 steps left at that rate,
    b's 1000 steps at 4x it, and one more start-up for b."""
    from tqdm import tqdm

    from filtervis.progress import Progress

    with tqdm(total=2000, file=io.StringIO()) as bar:
        progress = Progress(bar, "2 layers", 20, [("a", 1000, 1.0), ("b", 1000, 4.0)], "batch per layer", quiet=True)
        progress.start("a")
        time.sleep(0.35)
        progress(100)  # tracing + 100 steps
        time.sleep(0.05)
        progress(100)
    seconds = float(bar.desc.split("~")[1].split(" s")[0])
    expected = 800 * 0.0005 + 1000 * 4 * 0.0005 + 0.3  # 0.4 + 2.0 + 0.3
    assert abs(seconds - expected) <= 0.25 * expected + 1  # (printed in whole seconds; sleeps overshoot)
    assert seconds > 1000 * 0.0005 * 2  # b is not counted at a's cost


def test_a_whole_run_counts_each_layers_time_beyond_its_steps_and_tells_once_its_rate_is_known(capsys):
    """Layers a and b take 1 s beyond their steps each (tracing, writing); c's steps cost 70x theirs. a
    holds 1.4% of the work: the estimate is not told when a is done but when c, the last layer, begins:
    c's steps at the rate measured on a and b (70 s), plus what a layer takes beyond its steps: the part
    every layer takes (a's and b's 1 s less their steps' part) and c's part (LAYER_OVERHEAD_STEPS of its
    steps: 14 s)."""
    from tqdm import tqdm

    from filtervis.progress import LAYER_OVERHEAD_STEPS, Progress

    with tqdm(total=3000, file=io.StringIO()) as bar:
        progress = Progress(bar, "3 layers", 12, [("a", 1000, 1.0), ("b", 1000, 1.0), ("c", 1000, 70.0)],
                            "batch per layer", quiet=False)
        for name in ("a", "b"):
            progress.start(name)
            assert capsys.readouterr().err == ""  # not told when a is done: its rate is of 1.4% of the work
            time.sleep(0.5)
            progress(500)  # the first chunk (tracing): 0.5 s, as its 500 cost takes at the rate
            time.sleep(0.5)
            progress(500)  # 0.001 s per cost
            time.sleep(1.0)  # the layer's measuring and writing
        progress.start("c")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    seconds = float(lines[0].split("~")[1].split(" s")[0])
    part = LAYER_OVERHEAD_STEPS * 0.001
    expected = 70 + (1.0 - part) + 70 * part  # 70 s of steps without what is beyond them
    assert expected - 1.5 <= seconds <= expected + 2, (lines, expected)


# --- transparency (--alpha) and several pictures per filter (--diversity) ---


@pytest.mark.parametrize("count, parts", [(16, 2), (16, 3), (5, 8), (512, 7)])
def test_one_layers_shards_are_every_nth_filter(count, parts):
    from filtervis.progress import shard_pairs

    items = list(range(100, 100 + count))
    split = [shard_pairs([("conv", items, 3.0)], (k, parts))["conv"] for k in range(1, parts + 1)]
    assert split == [items[k::parts] for k in range(parts)]  # disjoint, all of them, sizes within one


def test_shards_of_a_whole_model_balance_cost_across_layers():
    """Deep layers cost more per filter: the parts get about equal cost, not equal counts."""
    from filtervis.progress import shard_pairs

    layers = [("conv1", list(range(64)), 1.0), ("conv2", list(range(8)), 8.0), ("conv3", list(range(2)), 20.0)]
    total = sum(len(f) * c for _, f, c in layers)
    parts = [shard_pairs(layers, (k, 3)) for k in (1, 2, 3)]
    for name, filters, _ in layers:  # every pair in exactly one part, each part's filters in order
        assert sorted(sum((part[name] for part in parts), [])) == filters
        assert all(part[name] == sorted(part[name]) for part in parts)
    costs = [sum(len(part[name]) * c for name, _, c in layers) for part in parts]
    assert max(costs) - min(costs) <= 20.0 < total / 3  # within the costliest pair
    assert parts == [shard_pairs(layers, (k, 3)) for k in (1, 2, 3)]  # stable
