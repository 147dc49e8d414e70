"""Shared fixtures: tiny models built in code, and the CLI run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent


def tiny_conv_model(size: int = 16, name: str = "tiny"):
    """Input(size, size, 3) 'pixels' -> conv(4, relu) 'conv1' -> conv(6, relu) 'conv2' -> GAP -> Dense(3, softmax) 'probs'."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def tiny_nested_model(size: int = 16):
    """A transfer-learning shape: Rescaling, then the tiny conv model as one layer 'base', then a head."""
    import keras

    base = tiny_conv_model(size, name="base")
    base = keras.Model(base.input, base.get_layer("conv2").output, name="base")
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="outer")


def run_target(cut, preprocess, image_shape, spec, layer: str = "layer"):
    """The compiled target (a targets.LayerFilters) that `filtervis run` renders every filter of `cut`
    with under the options of `spec` (an options.RunSpec): the goals of targets.unit_goals, compiled by
    targets.compile_goals (`layer` names the cut in them)."""
    from filtervis import targets

    goals = targets.unit_goals(layer, range(cut.filters), spec.objective, cut.classes, spec.tv_weight,
                               spec.lp_weight, spec.lp_norm, spec.diversity)
    return targets.compile_goals(dict(enumerate(goals)), {layer: cut}, preprocess, image_shape, spec.seed,
                                 spec.lp_norm).target


def run_renderer(cut, preprocess, image_shape, batch: int, spec, param=None):
    """The optimize.Renderer of run_target(cut, ...) for `batch` images, with the optimizer settings of
    `spec` (optimize.Settings.of)."""
    from filtervis import optimize

    return optimize.Renderer(run_target(cut, preprocess, image_shape, spec), preprocess, image_shape, batch,
                             optimize.Settings.of(spec), param)


@pytest.fixture
def tiny_model():
    return tiny_conv_model()


@pytest.fixture
def nested_model():
    return tiny_nested_model()


@pytest.fixture
def tiny_model_file(tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_conv_model().save(path)
    return path


def run_cli(*args, cwd=None, timeout=600):
    """`python -m filtervis ARGS` in a real subprocess; returns the CompletedProcess (text)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "filtervis", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


# --- models with unusual inputs, saved on first use (bad-input rows build their arguments in threads) ---

_ODD_MODELS_LOCK = __import__("threading").Lock()


def odd_model_file(folder, kind: str) -> Path:
    """`folder/<kind>.keras`, saved the first time it is asked for: `two_channel` (16x16x2 input),
    `grey` (16x16x1) or `two_inputs` ('image' 16x16x3 and 'meta' (4,)); each has a Conv2D 'conv'."""
    import keras

    path = Path(folder) / f"{kind}.keras"
    with _ODD_MODELS_LOCK:
        if path.is_file():
            return path
        keras.utils.set_random_seed(1)
        channels = {"two_channel": 2, "grey": 1, "two_inputs": 3}[kind]
        image = keras.Input((16, 16, channels), name="image")
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(image)
        x = keras.layers.GlobalAveragePooling2D()(x)
        if kind == "two_inputs":
            meta = keras.Input((4,), name="meta")
            model = keras.Model([image, meta], keras.layers.Dense(2)(keras.layers.Concatenate()([x, meta])))
        else:
            model = keras.Model(image, keras.layers.Dense(2)(x))
        model.save(path)
    return path


@pytest.fixture
def odd_model(tmp_path):
    """odd_model_file in this test's tmp_path: odd_model('grey') -> the saved model's path."""
    return lambda kind: odd_model_file(tmp_path, kind)
