"""How pixels in [0, 1] become a model's input: the preprocessing modes and `package.module:callable`.

Images enter the library as floats in [0, 1], NHWC, with the model's own channel count: 1
(grayscale), 3 (RGB) or 4 (RGBA). `preprocess_fn(mode, channels)` maps them to what the model expects:
`unit` ([0, 1] as is), `caffe` (BGR, 0-255, ImageNet mean subtracted), `tf` ([-1, 1]), `torch`
(ImageNet mean/std), `none` (0-255 as is, for models that preprocess inside themselves), or
`package.module:callable` (your function of the [0, 1] images).
"""

from __future__ import annotations

import importlib
import importlib.util

from ..errors import ModelError, SpecError

PREPROCESS_MODES = ("unit", "caffe", "tf", "torch", "none")  # or package.module:callable
RGB_ONLY_MODES = ("caffe", "torch")  # ImageNet colour statistics: 3-channel models only
# ImageNet statistics of each preprocessing mode (published Keras/torchvision constants).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def import_callable(target: str, what: str):
    """The callable named `package.module:callable`; ModelError naming the fix otherwise."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(f"cannot import module '{module_name}' of {what} {target} ({first_line(exc)}); "
                         "check it is on PYTHONPATH") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ModelError(f"module '{module_name}' has no callable '{attr}'; give {what} package.module:callable")
    return function



def check_preprocess(mode: str, channels: int) -> None:
    """SpecError unless `mode` suits a model with `channels` input channels (callables are checked when built)."""
    if ":" in mode:
        return
    if mode not in PREPROCESS_MODES:
        raise SpecError(f"--preprocess must be one of {', '.join(PREPROCESS_MODES)} or package.module:callable, "
                        f"but was {mode!r}")
    if mode in RGB_ONLY_MODES and channels != 3:
        raise SpecError(f"--preprocess {mode} uses ImageNet's RGB statistics, but the model takes "
                        f"{channels}-channel images; use --preprocess unit, tf, none or package.module:callable")


def preprocess_fn(mode: str, channels: int = 3):
    """A TensorFlow function mapping images in [0, 1] (NHWC, `channels` channels) to the model's input."""
    import tensorflow as tf

    check_preprocess(mode, channels)
    if ":" in mode:
        return _callable_preprocess(mode, channels)
    if mode == "unit":
        return lambda x: x
    if mode == "caffe":
        mean = tf.constant(CAFFE_MEAN_BGR, tf.float32)
        return lambda x: tf.reverse(x, [-1]) * 255.0 - mean  # reverse: a fast gradient
    if mode == "tf":
        return lambda x: x * 2.0 - 1.0
    if mode == "torch":
        mean, std = tf.constant(TORCH_MEAN, tf.float32), tf.constant(TORCH_STD, tf.float32)
        return lambda x: (x - mean) / std
    return lambda x: x * 255.0  # none


def _callable_preprocess(target: str, channels: int):
    """`package.module:callable` as a preprocessing: called on [B, H, W, C] float32 tensors in [0, 1]
    inside the optimizer's tf.function; must return the model's input (float). Checked once here."""
    import tensorflow as tf

    function = import_callable(target, "--preprocess")
    try:
        out = function(tf.zeros([1, 4, 4, channels]))
        tf.convert_to_tensor(out, tf.float32)
    except Exception as exc:
        raise SpecError(f"--preprocess {target} failed on a [1, 4, 4, {channels}] tensor in [0, 1] "
                        f"({type(exc).__name__}: {first_line(exc)}); it must map such tensors to the model's "
                        "input with TensorFlow ops") from None
    return lambda x: tf.cast(function(x), tf.float32)


def first_line(exc):
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
