"""Cut a model at a layer: the image input -> that layer's pre-activation (`cut`, a `Cut`).

Two ways to cut. A functional (or Sequential) model, and layers of functional models nested in it,
are cut as a graph: a new keras.Model from the input to the layer, so nothing past it is computed
(the fast path). Anything else (a subclassed model, a layer inside a custom block, a layer that
is not a graph node) is *captured*: the whole model is called, the target layer's `call` is wrapped
for the duration of that call to record its output, and the pass stops right there (a private
exception unwinds it), so it costs no more than the graph cut.
"""

from __future__ import annotations

import dataclasses

from ..errors import LayerError
from .graph import (KIND_CHANNELS, KIND_UNITS, as_loaded, check_visualizable, find_layer, is_graph, layer_shapes,
                    replace_call, restore_call)

ACTIVATION_LAYERS = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax")  # rendered from their input
BYPASSED = ("softmax", "sigmoid", "log_softmax")  # replaced by their logits: classes do not compete


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


def _activation_name(function) -> str:
    name = getattr(function, "__name__", None) or type(function).__name__
    return name.lower()


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

    loaded = as_loaded(model)
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

    cast.weights = getattr(activation, "weights", None)  # (a layer's own weights, see passes.is_elementwise)
    return cast


def _graph_cut(loaded, chain, how):
    """The fast path's keras.Model (inputs -> pre-activation), or None when the chain is not a graph."""
    import keras

    model = loaded.model
    parents = [model, *chain[:-1]]
    if not all(is_graph(parent) for parent in parents):
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

        replace_call(target, call)
        try:
            loaded.model(loaded.feed(images), training=False)
        except _Captured:
            pass
        finally:
            restore_call(target)
        if not box:
            raise LayerError(f"layer '{target.name}' was not called by the model's forward pass; pick one that "
                             "`filtervis layers` lists")
        return tf.cast(box[0], tf.float32)

    return forward
