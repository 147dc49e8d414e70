"""Find a layer (also inside nested models) and list the layers a forward pass reaches (cut.py cuts
the model at one).

Output shapes come from one forward pass on zeros (`layer_shapes`), with every layer's `call`
wrapped to record what it returns: this is what "a layer the forward pass reaches" means.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch

from ..errors import LayerError
from .describe import LoadedModel, describe

KIND_CHANNELS, KIND_UNITS = "channels", "units"
PROBE_SIZE = 224  # pixels: the side of the zero images a model that takes any size is probed with


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One row of `filtervis layers`. `filters` is None when the layer cannot be visualized; `kind`
    says whether it is visualized by channels (maps) or by units (a (batch, units) output)."""

    path: str
    type: str
    shape: tuple
    filters: int | None
    kind: str | None = None


def as_loaded(model):
    """A LoadedModel for a LoadedModel or a bare keras.Model."""
    return model if isinstance(model, LoadedModel) else describe(model)


def children(layer) -> list:
    """The layers directly inside `layer`: a model's layers, or the sublayers a custom layer tracks."""
    import keras

    if isinstance(layer, keras.Model):
        return list(layer.layers)
    return [child for child in getattr(layer, "_layers", []) if isinstance(child, keras.layers.Layer)]


def walk(model, prefix=""):
    """Yield (path, layer) for every layer, descending into nested models and custom layers."""
    for layer in children(model):
        path = f"{prefix}{layer.name}"
        yield path, layer
        yield from walk(layer, prefix=f"{path}/")


def is_graph(model) -> bool:
    """True for a functional or Sequential model whose inputs are known (its layers are graph nodes)."""
    import keras

    if not isinstance(model, keras.Model):
        return False
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError, TypeError):
        return False


def replace_call(layer, function):
    """Have `layer` run `function` in place of its own `call` (until restore_call)."""
    object.__setattr__(layer, "call", function)


def restore_call(layer):
    """Undo replace_call: the layer runs its class's `call` again."""
    try:
        object.__delattr__(layer, "call")
    except AttributeError:
        pass


def _shape_of(value):
    """The shape (without batch) of a single tensor, None for anything else (lists, dicts)."""
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) < 1:
        return None
    return tuple(None if d is None else int(d) for d in list(shape)[1:])


def layer_shapes(model) -> dict:
    """{path: output shape without batch (None for several outputs)} of every layer one forward pass on
    zeros reaches, in the order they are first called. Input layers are listed with the input shape."""
    import keras
    import numpy as np

    loaded = as_loaded(model)
    height, width, channels = loaded.input_shape
    zeros = np.zeros((1, height or PROBE_SIZE, width or PROBE_SIZE, channels), np.float32)
    paths = list(walk(loaded.model))
    seen: dict = {}
    order: dict = {}

    def recorder(path, original):
        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if path not in seen:
                seen[path] = _shape_of(out)
                order[path] = len(order)
            return out
        return call

    patched = []
    try:
        for path, layer in paths:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            replace_call(layer, recorder(path, layer.call))
            patched.append(layer)
        loaded.model(loaded.feed(zeros), training=False)
    finally:
        for layer in patched:
            restore_call(layer)
    shapes = {}
    for path, layer in paths:
        if isinstance(layer, keras.layers.InputLayer):
            shapes[path] = None if loaded.inputs else (zeros.shape[1], zeros.shape[2], channels)
    for path in sorted(seen, key=order.get):
        shapes[path] = seen[path]
    return shapes


def filter_count(shape) -> int | None:
    """Filters of an output shape (without batch): the last axis of a map (rank 2 or 3), or the
    units of a (batch, units) output; None when not visualizable."""
    if shape is None or not shape or not shape[-1] or len(shape) > 3:
        return None
    return int(shape[-1])


def _visualizable(layer, shape) -> tuple:
    """(filters, kind) of a layer's row: (None, None) for inputs and layers without channels or units."""
    import keras

    count = None if isinstance(layer, keras.layers.InputLayer) else filter_count(shape)
    if count is None:
        return None, None
    return count, KIND_UNITS if len(shape) == 1 else KIND_CHANNELS


def list_layers(model, show_all: bool = False) -> list[LayerInfo]:
    """The layers a forward pass reaches, in call order, nested ones as `outer/inner`, with their
    output shape (with batch, None) and filter count; `show_all` adds the layers it does not reach."""
    loaded = as_loaded(model)
    shapes = layer_shapes(loaded)
    layers = dict(walk(loaded.model))
    rows = [LayerInfo(path, type(layers[path]).__name__, (None, *shape) if shape is not None else (),
                      *_visualizable(layers[path], shape)) for path, shape in shapes.items()]
    if show_all:
        rows += [LayerInfo(path, type(layer).__name__, (), None) for path, layer in layers.items() if path not in shapes]
    return rows


PATTERN_CHARACTERS = "*?["  # a --layer with one of these is a shell-style pattern (fnmatch)
ALL_LAYERS = "all"


def is_pattern(request: str) -> bool:
    """Whether a --layer value names several layers: `all`, or a shell-style pattern."""
    return request == ALL_LAYERS or any(c in request for c in PATTERN_CHARACTERS)


def select_layers(model, requests, shapes: dict | None = None) -> list[tuple[str, bool]]:
    """The layers `requests` name, in the model's order (that of `list_layers`), each with whether it
    was named explicitly: `all` gives every layer that can be visualized, a shell-style pattern
    (`block*_conv*`, `*/conv*`) those whose path matches, and a path itself (checked later, by
    check_visualizable). LayerError for a pattern that matches nothing (naming the closest layers) and
    for `all` on a model with nothing to visualize."""
    loaded = as_loaded(model)
    shapes = layer_shapes(loaded) if shapes is None else shapes
    layers = dict(walk(loaded.model))
    order = {path: i for i, path in enumerate(shapes)}
    visual = [path for path, shape in shapes.items() if path in layers and _visualizable(layers[path], shape)[0]]
    chosen: dict[str, bool] = {}
    for request in requests:
        if request == ALL_LAYERS:
            if not visual:
                raise LayerError(f"--layer all: model '{loaded.name}' has no layer with channels or units to "
                                 "visualize (`filtervis layers --all` lists its layers)")
            matched = visual
        elif is_pattern(request):
            matched = [path for path in visual if fnmatch.fnmatchcase(path, request)]
            if not matched:
                close = difflib.get_close_matches(request, visual, n=3, cutoff=0.3)
                hint = f"closest: {', '.join(close)}; " if close else ""
                raise LayerError(f"--layer {request!r} matches no layer of model '{loaded.name}' ({hint}"
                                 "`filtervis layers` lists them)")
        else:
            chosen[request] = True
            continue
        for path in matched:
            chosen.setdefault(path, False)
    return sorted(chosen.items(), key=lambda item: order.get(item[0], len(order)))


def find_layer(model, path: str):
    """The chain of layers named by `outer/inner` (outermost first); LayerError with close names if unknown."""
    root = as_loaded(model).model if not hasattr(model, "layers") else model
    chain, current = [], root
    for name in path.split("/"):
        layers = {layer.name: layer for layer in children(current)}
        if name not in layers:
            known = [p for p, _ in walk(root)]
            close = difflib.get_close_matches(path, known, n=3, cutoff=0.5)
            hint = f"closest: {', '.join(close)}; " if close else ""
            raise LayerError(f"model '{root.name}' has no layer '{path}' ({hint}`filtervis layers` lists them)")
        chain.append(layers[name])
        current = layers[name]
    return chain


def check_visualizable(model, path: str, shapes: dict | None = None) -> int:
    """Number of filters (channels or units) of layer `path`; LayerError when it has none."""
    loaded = as_loaded(model)
    target = find_layer(loaded.model, path)[-1]
    shapes = layer_shapes(loaded) if shapes is None else shapes
    if path not in shapes:
        raise LayerError(f"layer '{path}' is not reached by a forward pass of the model; pick one that "
                         "`filtervis layers` lists")
    count, _ = _visualizable(target, shapes[path])
    if count is None:
        shape = shapes[path]
        shown = "several outputs" if shape is None else f"output shape {(None, *shape)}"
        raise LayerError(f"layer '{path}' has {shown}: no channels or units to visualize; pick a layer whose "
                         "output is (batch, H, W, C) or (batch, units) (`filtervis layers` lists them)")
    return count
