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
