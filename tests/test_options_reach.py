"""Every option reaches the stage that uses it: each option that changes the pictures (options.Option.pictures)
changes them through `filtervis run` *and* through `filtervis.render`; the options that do not are an
explicit list, and leave the pictures byte for byte as they were.

The CLI is driven through click's own entry (flags parsed, RunSpec built, run.run called: the path of
`filtervis run`, in this process); render through `filtervis.render(path, ...)`. Tiny models built
here, saved as .keras files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import filtervis
from filtervis import cli, options

LAYER = "conv2"
BASE = {"filters": "0-1", "size": 16, "steps": 8, "preprocess": "unit", "seed": 0, "rescue": False}  # (a rescued picture
# is a pixel one without transforms: it would hide what the options do to the first pass)

# option -> (what the comparison starts from, besides BASE; the other value). Files are made by `files`.
CHANGES = {
    "model": ({}, "@other_model"),
    "weights": ({}, "@other_weights"),
    "preprocess": ({}, "tf"),
    "input": ({"model": "@two_inputs", "input": "a"}, "b"),
    "steps": ({}, 12),
    "lr": ({}, 0.2),
    "size": ({}, 20),
    "tv_weight": ({}, 1.0),
    "lp_weight": ({}, 1.0),
    "lp_norm": ({"lp_weight": 1.0}, 2.0),
    "jitter": ({}, 0),
    "seed_image": ({}, "@grey_image"),
    "param": ({}, "fft"),
    "decay": ({"param": "fft"}, 2.0),
    "transforms": ({}, "none"),
    "objective": ({}, "neuron"),
    "rescue": ({"model": "@dead_filter", "rescue": True}, False),
    "tile": ({}, True),
    "gif": ({}, True),
    "alpha": ({}, True),
    "diversity": ({}, 2),
    "seed": ({}, 1),
    "early_stop": ({"steps": 96}, 0.5),
    "precision": ({"precision": "float32"}, "bfloat16"),
}
# Options that do not change the pictures (options.Option.pictures is False), and a value to try.
UNCHANGING = {"batch": 1, "memory_budget": "3G", "cols": 1}
NOT_TRIED = {"layers", "filters", "out", "quiet", "resume", "shard", "report", "unsafe_model"}  # files, flow


def _model(name: str, inputs_named=None, dead: bool = False):
    import keras

    keras.utils.set_random_seed(3 if name == "other" else 1)
    if inputs_named:
        a, b = (keras.Input((16, 16, 3), name=n) for n in inputs_named)  # the other input is held at zeros: fixed
        x = keras.layers.Add()([keras.layers.Conv2D(4, 3, padding="same", name=f"in_{n}")(t)
                                for n, t in zip(inputs_named, (a, b))])
        out = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name=LAYER)(x)
        return keras.Model([a, b], out, name=name)
    inputs = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    out = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name=LAYER)(x)
    model = keras.Model(inputs, out, name=name)
    if dead:  # filter 1 of conv2 never fires: the rescue has work to do
        kernel, bias = model.get_layer(LAYER).get_weights()
        bias[1] = -100.0
        model.get_layer(LAYER).set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("models")
    made = {}
    for key, model in [("tiny", _model("tiny")), ("other_model", _model("other")),
                       ("two_inputs", _model("two", inputs_named=("a", "b"))), ("dead_filter", _model("dead", dead=True))]:
        made[key] = folder / f"{key}.keras"
        model.save(made[key])
    made["other_weights"] = folder / "other.weights.h5"
    _model("other").save_weights(made["other_weights"])
    made["grey_image"] = folder / "grey.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(made["grey_image"])
    return made


def _values(files, changes: dict) -> dict:
    values = {**BASE, "model": "@tiny", **changes}
    return {k: str(files[v[1:]]) if isinstance(v, str) and v.startswith("@") else v for k, v in values.items()}


def _pictures(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).rglob("filter_*")) if p.suffix in (".png", ".gif")}


def _by_cli(values: dict, out: Path) -> dict:
    args = ["run", "--layer", LAYER, "--out", str(out), "--quiet", "--no-report"]
    for name, value in values.items():
        entry = options.OPTIONS[name]
        flag = (entry.flag or options.flag(name)).split("/")
        if isinstance(value, bool):
            args += [flag[0] if value else (flag[1] if len(flag) > 1 else None)] if (value or len(flag) > 1) else []
        else:
            args += [flag[0], str(value)]
    cli.cli.main(args=args, standalone_mode=False)
    return _pictures(out / LAYER)


def _by_render(values: dict, out: Path) -> dict:
    values = dict(values)
    model, filters = values.pop("model"), values.pop("filters")
    filtervis.render(model, LAYER, filters, **values).save(out)
    return _pictures(out / LAYER)


def test_every_option_is_classified():
    """A new option must say whether it changes the pictures, and this test must know how to change it."""
    picture_options = {name for name, o in options.OPTIONS.items() if o.pictures}
    assert picture_options == set(CHANGES), "give each option that changes the pictures a case in CHANGES"
    assert set(options.OPTIONS) - picture_options == set(UNCHANGING) | NOT_TRIED
    assert options.UNCOMPARED == set(UNCHANGING) | NOT_TRIED  # what --resume and stitch may differ in


@pytest.mark.parametrize("way", ["cli", "render"])
@pytest.mark.parametrize("name", sorted(CHANGES))
def test_an_option_that_changes_the_pictures_changes_them(name, way, files, tmp_path):
    start, other = CHANGES[name]
    run = _by_cli if way == "cli" else _by_render
    before = run(_values(files, start), tmp_path / "a")
    after = run(_values(files, {**start, name: other}), tmp_path / "b")
    assert before, f"{name}: the first run wrote no pictures"
    assert before != after, f"{name}={other!r} did not change the pictures through {way}"


@pytest.mark.parametrize("name", sorted(UNCHANGING))
def test_an_option_that_does_not_change_the_pictures_leaves_them_as_they_were(name, files, tmp_path):
    before = _by_render(_values(files, {}), tmp_path / "a")
    after = _by_render(_values(files, {name: options.OPTIONS[name].parse(UNCHANGING[name])
                                       if options.OPTIONS[name].parse and isinstance(UNCHANGING[name], str)
                                       else UNCHANGING[name]}), tmp_path / "b")
    assert before and before == after
