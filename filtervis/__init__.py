"""filtervis: see what the filters of a convolutional network respond to.

    import filtervis
    result = filtervis.render(model, "block3_conv1", filters="0-7")   # see filtervis.api
    filtervis.objectives.channel("block3_conv1", 3) - 0.5 * filtervis.objectives.channel("block3_conv1", 7)
    filtervis.keras.FilterCallback("conv2", "0-7", out="filters")     # during model.fit

TensorFlow is imported on first use, so `filtervis --help` stays fast.
"""

__version__ = "0.1.0"

_API = {"render": "api", "evaluate": "api", "prepare": "api", "Result": "api", "FilterRecord": "api"}
_MODULES = ("objectives", "keras", "api")
__all__ = ["__version__", "render", "evaluate", "prepare", "Result", "FilterRecord", "objectives", "keras"]


def __getattr__(name):
    import importlib

    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'filtervis' has no attribute {name!r}")
