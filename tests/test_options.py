import pytest

from filtervis.options import RunSpec, load_config
from filtervis.errors import ConfigError, SpecError


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
