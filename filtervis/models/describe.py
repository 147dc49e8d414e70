"""What filtervis needs to know of a keras.Model: its image input (name, size, channels), the other
inputs held at zeros, its weights' name and its preprocessing (`LoadedModel`, made by `describe`)."""

from __future__ import annotations

import dataclasses
import inspect

from ..errors import ModelError, SpecError
from .preprocess import check_preprocess

IMAGE_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA
CHANNEL_NAMES = {1: "grayscale", 3: "RGB", 4: "RGBA"}
PROBE_CHANNELS = (3, 1, 4)  # tried in this order on a model whose input shape nothing records
# Layers that preprocess inside the model, so a model file that starts with one takes 0-255 pixels.
_SELF_PREPROCESSING = ("Rescaling", "Normalization")


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model with what filtervis needs to know about it.

    `input_shape` is the image input's (height, width, channels) without the batch axis; height and
    width are None when the model takes any size. `input_name` is the image input of a multi-input
    model (the others are held at zeros: `feed`), None for a single input. `preprocess` is None until
    a mode is given or known (listing layers needs none).
    """

    model: object  # keras.Model
    name: str
    weights: str
    preprocess: str | None
    input_shape: tuple
    input_name: str | None = None
    inputs: tuple = ()  # (name, shape without batch) of every input, in the model's order

    @property
    def channels(self) -> int:
        return int(self.input_shape[2])

    @property
    def size(self) -> tuple[int, int] | None:
        """The fixed (height, width) of the input, None when the model takes any size."""
        height, width = self.input_shape[:2]
        return (height, width) if height and width else None

    def feed(self, images):
        """What the model is called with for a batch of (preprocessed) images: the images themselves,
        or for a multi-input model a list in the model's order with zeros for the other inputs."""
        if len(self.inputs) <= 1:
            return images
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        batch = tf.shape(images)[0]
        return [images if name == self.input_name else tf.zeros(tf.concat([[batch], shape], 0), images.dtype)
                for name, shape in self.inputs]


def parse_size(size) -> tuple[int, int] | None:
    """`--size` as (height, width): an int N (N x N), a (height, width) pair, or None."""
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def describe(model, name: str | None = None, weights: str = "memory", preprocess: str | None = None,
             size=None, input_name: str | None = None) -> LoadedModel:
    """A LoadedModel for a keras.Model in memory: finds its image input and checks its channels.

    `size` (int or (height, width)) must match a fixed input size; it is needed only for a model
    that records no input shape at all (a subclassed model never called).
    """
    import keras

    if not isinstance(model, keras.Model):
        raise ModelError(f"{name or 'the model'} is a {type(model).__name__}, not a keras.Model")
    name = name or model.name
    size = parse_size(size)
    inputs = _model_inputs(model, size)
    if inputs is None:
        raise ModelError(f"model '{name}' records no input shape (a subclassed model that was never called); "
                         "call it once on a batch in your factory, or give --size HxW")
    if len(inputs) > 1:
        names = [n for n, _ in inputs]
        if input_name is None:
            raise SpecError(f"model '{name}' has {len(inputs)} inputs ({', '.join(names)}); pick the image "
                            "input with --input NAME (the others are held at zeros)")
        if input_name not in names:
            raise SpecError(f"--input {input_name}: model '{name}' has no such input; its inputs are "
                            f"{', '.join(names)}")
        if any(None in shape for n, shape in inputs if n != input_name):
            raise ModelError(f"model '{name}': the inputs other than '{input_name}' must have fixed shapes "
                             "to be held at zeros")
        shape = dict(inputs)[input_name]
    else:
        if input_name is not None and input_name != inputs[0][0]:
            raise SpecError(f"--input {input_name}: model '{name}' has one input, '{inputs[0][0]}'; "
                            "drop --input or give that name")
        input_name, shape = None, inputs[0][1]
    if len(shape) != 3:
        raise ModelError(f"model '{name}' takes input of shape (None, {', '.join(map(str, shape))}); "
                         "filtervis needs images (batch, height, width, channels)")
    channels = shape[2]
    if channels not in IMAGE_CHANNELS:
        raise ModelError(f"model '{name}' takes {channels}-channel images; filtervis renders 1 (grayscale), "
                         "3 (RGB) or 4 (RGBA) channels")
    native = shape[:2]
    if size is not None and all(native) and tuple(size) != tuple(native):
        raise SpecError(f"model {name} takes {native[1]}x{native[0]} (width x height) images; use --size "
                        f"{size_text(native)} or leave --size out")
    if size is not None and not all(native):
        native = tuple(s if s else given for s, given in zip(native, size))
    if preprocess is not None:
        check_preprocess(preprocess, channels)
    return LoadedModel(model, name, weights, preprocess, (native[0], native[1], channels), input_name,
                       tuple(inputs) if len(inputs) > 1 else ())


def size_text(hw) -> str:
    return str(hw[0]) if hw[0] == hw[1] else f"{hw[1]}x{hw[0]}"


def _model_inputs(model, size):
    """[(name, shape without batch)] of the model's inputs, or None when nothing records them.

    A functional or Sequential model knows its inputs; a subclassed one may have recorded the shape it
    was built for, or declare it as the default of its `build`; else, with `size`, the channel counts
    of PROBE_CHANNELS are tried by calling it.
    """
    try:
        tensors = list(model.inputs)
    except (AttributeError, ValueError, TypeError):
        tensors = None
    if tensors:
        return [(_tensor_name(t, i), tuple(t.shape[1:])) for i, t in enumerate(tensors)]
    recorded = [shape for shape in (getattr(model, "_build_shapes_dict", None) or {}).values()
                if isinstance(shape, (tuple, list)) and len(shape) == 4]
    if not recorded:
        default = inspect.signature(type(model).build).parameters.get("input_shape")
        if default is not None and isinstance(default.default, (tuple, list)) and len(default.default) == 4:
            recorded = [default.default]
    if recorded:
        return [("input", tuple(recorded[0][1:]))]
    if size is None:
        return None
    import numpy as np

    for channels in PROBE_CHANNELS:
        try:
            model(np.zeros((1, *size, channels), np.float32), training=False)
        except Exception:
            continue
        return [("input", (None, None, channels))]
    raise ModelError(f"model '{model.name}' cannot be called on images of {size[1]}x{size[0]} with 1, 3 or 4 "
                     "channels; check --size, or call the model once in your factory")


def _tensor_name(tensor, index):
    name = getattr(tensor, "name", None) or f"input_{index}"
    return name.split(":")[0]


def guess_preprocess(loaded: LoadedModel) -> str:
    """The preprocessing of a model file or factory: `none` when it starts with a Rescaling or
    Normalization layer (it takes 0-255 pixels); SpecError asking for --preprocess otherwise."""
    first = [layer for layer in getattr(loaded.model, "layers", [])[:4]
             if type(layer).__name__ in _SELF_PREPROCESSING]
    if first:
        return "none"
    raise SpecError(f"say how --model {loaded.name} expects its input with --preprocess unit ([0, 1]), tf "
                    "([-1, 1]), caffe, torch, none (0-255) or package.module:callable")
