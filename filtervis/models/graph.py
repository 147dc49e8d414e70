"""Find a layer (also inside nested models), list the layers a forward pass reaches, and cut the
model at one: the input -> that layer's pre-activation.

Two ways to cut. A functional (or Sequential) model, and layers of functional models nested in it,
are cut as a graph: a new keras.Model from the input to the layer, so nothing past it is computed
(the fast path). Anything else (a subclassed model, a layer inside a custom block, a layer that
is not a graph node) is *captured*: the whole model is called, the target layer's `call` is wrapped
for the duration of that call to record its output, and the pass stops right there (a private
exception unwinds it), so it costs no more than the graph cut.

Output shapes come from one forward pass on zeros (`layer_shapes`), with every layer's `call`
wrapped to record what it returns: this is what "a layer the forward pass reaches" means.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch

from ..errors import LayerError
from .describe import LoadedModel, describe

ACTIVATION_LAYERS = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax")  # rendered from their input
BYPASSED = ("softmax", "sigmoid", "log_softmax")  # replaced by their logits: classes do not compete
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


@dataclasses.dataclass(frozen=True)
class Cut:
    """The model cut at a layer.

    `forward(images)` maps a batch of model-ready images (the image input, NHWC) to the layer's
    pre-activation, float32 [B, ..., C]; `activation` maps that to the layer's output as the layer
    gives it (identity when a softmax or sigmoid was bypassed). `model` is the keras.Model of the
    fast path (its inputs are the model's inputs: call it with `feed(images)`), None when captured.
    `classes` is True when a softmax over a (batch, units) output was bypassed: the units are classes.
    `exact` is the float32 Cut of the same layer when this one computes in a lower type (--precision):
    what a run measures with.
    """

    forward: object
    activation: object
    output_shape: tuple  # without the batch axis
    model: object = None
    feed: object = None
    classes: bool = False
    exact: object = None

    @property
    def kind(self) -> str:
        return KIND_UNITS if len(self.output_shape) == 1 else KIND_CHANNELS

    @property
    def filters(self) -> int:
        return int(self.output_shape[-1])


def _loaded(model):
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


def _replace_call(layer, function):
    object.__setattr__(layer, "call", function)


def _restore_call(layer):
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

    loaded = _loaded(model)
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
            _replace_call(layer, recorder(path, layer.call))
            patched.append(layer)
        loaded.model(loaded.feed(zeros), training=False)
    finally:
        for layer in patched:
            _restore_call(layer)
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
    loaded = _loaded(model)
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
    loaded = _loaded(model)
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
    root = _loaded(model).model if not hasattr(model, "layers") else model
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
    loaded = _loaded(model)
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


def _activation_name(function) -> str:
    name = getattr(function, "__name__", None) or type(function).__name__
    return name.lower()


def _is_graph(model) -> bool:
    """True for a functional or Sequential model whose inputs are known (its layers are graph nodes)."""
    import keras

    if not isinstance(model, keras.Model):
        return False
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError, TypeError):
        return False


def _plan(target, shape):
    """How the target is rendered: ('input', activation) to take an activation layer's input, or
    ('linear', activation) to run a layer without its activation, or ('output', identity); and
    whether the units are classes (a bypassed softmax on a (batch, units) output)."""
    import keras

    identity = keras.activations.linear
    kind = type(target).__name__
    if kind in ACTIVATION_LAYERS:
        name = "softmax" if kind == "Softmax" else _activation_name(getattr(target, "activation", None))
        if name in BYPASSED:
            return "input", identity, _are_classes(name, shape)
        return "input", target, False
    activation = getattr(target, "activation", None)
    name = _activation_name(activation) if activation is not None else "linear"
    if activation is None or name == "linear":
        return "output", identity, False
    if name in BYPASSED:
        return "linear", identity, _are_classes(name, shape)
    return "linear", activation, False


def _are_classes(name, shape) -> bool:
    """A softmax (not a sigmoid: labels that do not compete) over two or more units."""
    return name != "sigmoid" and len(shape) == 1 and shape[0] >= 2


def cut(model, path: str, shapes: dict | None = None) -> Cut:
    """The model from its image input to layer `path`'s pre-activation (see the module doc).

    A softmax or sigmoid (a layer's activation, or an Activation/Softmax layer) is bypassed: its
    logits are rendered, and a softmax over units marks them as classes (`Cut.classes`).
    """
    import tensorflow as tf

    loaded = _loaded(model)
    shapes = layer_shapes(loaded) if shapes is None else shapes
    check_visualizable(loaded, path, shapes)
    chain = find_layer(loaded.model, path)
    target = chain[-1]
    how, activation, classes = _plan(target, shapes[path])
    graph = _graph_cut(loaded, chain, how)
    if graph is not None:
        def forward(images, training=False):
            return tf.cast(graph(loaded.feed(images), training=False), tf.float32)
    else:
        forward = _captured(loaded, target, how)
    if getattr(target, "compute_dtype", "float32") != "float32":
        activation = _in_float32(activation)
    # the pre-activation has the layer's output shape (an activation layer's input is shaped as its output)
    return Cut(forward, activation, shapes[path], graph, loaded.feed, classes)


def _in_float32(activation):
    """`activation` (of a layer computing in a lower type, --precision) giving float32 values, as the
    objective and every measure take them."""
    import tensorflow as tf

    def cast(values):
        return tf.cast(activation(values), tf.float32)

    cast.weights = getattr(activation, "weights", None)  # (a layer's own weights, see targets.is_elementwise)
    return cast


def _graph_cut(loaded, chain, how):
    """The fast path's keras.Model (inputs -> pre-activation), or None when the chain is not a graph."""
    import keras

    model = loaded.model
    parents = [model, *chain[:-1]]
    if not all(_is_graph(parent) for parent in parents):
        return None
    target = chain[-1]
    try:
        inputs = [keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype) for t in model.inputs]
        outputs, outer = (inputs if len(inputs) > 1 else inputs[0]), model
        for layer in chain[:-1]:
            if len(layer._inbound_nodes) != 1:
                return None
            prefix = keras.Model(outer.inputs, layer._inbound_nodes[0].input_tensors)  # input of the nested model
            outputs, outer = prefix(outputs), layer
        if len(target._inbound_nodes) != 1:
            return None
        if how == "input":
            outputs = keras.Model(outer.inputs, target.input)(outputs)
        elif how == "linear":
            config = dict(target.get_config(), activation="linear", name=f"{target.name}_preactivation")
            # zeros, not the layer's initializers: its weights are copied in, and a random initializer
            # would draw from Keras's global random stream (a training run's dropout would then change)
            config.update({key: "zeros" for key in config if key.endswith("_initializer")})
            linear = type(target).from_config(config)
            outputs = linear(keras.Model(outer.inputs, target.input)(outputs))
            linear.set_weights(target.get_weights())
        else:
            outputs = keras.Model(outer.inputs, target.output)(outputs)
        return keras.Model(inputs, outputs, name=f"cut_{target.name}")
    except (ValueError, AttributeError, TypeError, KeyError):  # not a plain graph node after all
        return None


class _Captured(BaseException):
    """Unwinds the forward pass once the target layer's value is recorded (never leaves this module)."""


def _captured(loaded, target, how):
    """forward(images) -> the target's pre-activation, by calling the whole model with the target's
    `call` wrapped for the duration of the call (see the module doc)."""
    import keras
    import tensorflow as tf

    def forward(images, training=False):
        box = []
        original = target.call

        def call(*args, **kwargs):
            if how == "input":
                box.append(args[0] if args else next(iter(kwargs.values())))
            elif how == "linear":
                saved = target.activation
                object.__setattr__(target, "activation", keras.activations.linear)
                try:
                    box.append(original(*args, **kwargs))
                finally:
                    object.__setattr__(target, "activation", saved)
            else:
                box.append(original(*args, **kwargs))
            raise _Captured

        _replace_call(target, call)
        try:
            loaded.model(loaded.feed(images), training=False)
        except _Captured:
            pass
        finally:
            _restore_call(target)
        if not box:
                    raise LayerError(f"layer '{target.name}' was not called by the model's forward pass; pick one that "
                             "`filtervis layers` lists")
        return tf.cast(box[0], tf.float32)

    return forward
