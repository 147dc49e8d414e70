import pytest

from filtervis.options import RunSpec, load_config, parse_filters
from filtervis.errors import ConfigError, SpecError


@pytest.mark.parametrize("text, count, expected", [
    ("all", 4, [0, 1, 2, 3]),
    ("0-3", 10, [0, 1, 2, 3]),
    ("3,7,9", 10, [3, 7, 9]),
    ("0-2,12", 13, [0, 1, 2, 12]),
    ("5, 1-2 ,5", 10, [1, 2, 5]),
])
def test_parse_filters_resolves_indices(text, count, expected):
    assert parse_filters(text).resolve(count, seed=0) == expected


@pytest.mark.parametrize("text", ["", "a", "3-", "-3", "1,,2", "5-2", "random:", "random:0", "random:x", "1.5"])
def test_parse_filters_rejects_malformed(text):
    with pytest.raises(SpecError, match="--filters"):
        parse_filters(text)


def test_random_filters_are_distinct_sorted_and_seeded():
    spec = parse_filters("random:5")
    first = spec.resolve(50, seed=3)
    assert first == sorted(set(first)) and len(first) == 5 and max(first) < 50
    assert spec.resolve(50, seed=3) == first
    assert spec.resolve(50, seed=4) != first


def test_resolve_rejects_index_past_count_naming_layer():
    with pytest.raises(SpecError, match=r"filter index 64 .* 64 filters of layer 'conv' \(valid: 0-63\)"):
        parse_filters("60-64").resolve(64, 0, "conv")
    with pytest.raises(SpecError, match="random:8 or fewer"):
        parse_filters("random:9").resolve(8, 0, "conv")


@pytest.mark.parametrize("field, value, message", [
    ("steps", 0, "--steps must be 1 or more"),
    ("lr", 0.0, "--lr must be above 0"),
    ("size", (4, 4), "--size must be 8 or more"),
    ("tv_weight", -1.0, "--tv-weight"),
    ("lp_norm", 0.5, "--lp-norm"),
    ("cols", 0, "--cols"),
    ("preprocess", "bgr", "--preprocess must be one of"),
    ("filters", "x", "--filters"),
])
def test_runspec_rejects_bad_values(field, value, message):
    with pytest.raises(SpecError, match=message):
        RunSpec(layers=("a",), **{field: value})


def test_a_run_needs_a_layer_and_the_spec_is_frozen(tmp_path):
    from filtervis.run import run

    with pytest.raises(SpecError, match="--layer is required"):
        run(RunSpec(layers=(), out=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()
    spec = RunSpec(layers=("a",))
    with pytest.raises(AttributeError):
        spec.steps = 3


def test_load_config_maps_dashes_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('tv-weight = 0\nlayer = ["a", "b"]\n')
    assert load_config(path, {"tv_weight", "layer"}) == {"tv_weight": 0, "layer": ["a", "b"]}
    path.write_text("stepz = 3\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown key 'stepz'"):
        load_config(path, {"steps"})


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("steps = = 3", "not valid TOML"),
    ("[steps]\nx = 1", "is a table"),
])
def test_load_config_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "c.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path, {"steps"})
