"""A cut whose layers form a plain chain, run layer by layer with a cheaper gradient.

The gradient of a ReLU is a pass over its whole output: the incoming gradient is zeroed where the
output is 0. Where a max pool follows the ReLU, the pool's gradient reaches only the value each window
picked, and that value is 0 exactly when the window's maximum (the pool's output) is. So the mask can
be taken at the pool's output, a quarter of the size for a 2x2 pool, before the pool's gradient, and the
full-size pass skipped: the numbers are the same bit for bit. On VGG16 cut at block3_conv1, 224 px,
bfloat16, forward + input gradient ran 4-7% faster (benchmarks/speed.py; more of a step's time is the
ReLUs' gradients the shallower the cut).

`layers(model)` finds the chain, `forward(layers)` runs it. Every other layer runs as Keras calls it.
"""

from __future__ import annotations

from .graph import children, is_graph


def layers(model) -> list | None:
    """The leaf layers of `model` (a functional Keras model; nested functional models are opened) in the
    order they run, when each takes the output of the one before as its only input, from the model's
    one input to its one output; None otherwise (branches, merges, several inputs or outputs, a layer
    called twice, a subclassed model)."""
    import keras

    def chain(functional):
        if not is_graph(functional) or len(functional.inputs) != 1 or len(functional.outputs) != 1:
            return None
        tensor, start, found = functional.outputs[0], functional.inputs[0], []
        while tensor is not start:
            history = getattr(tensor, "_keras_history", None)
            if history is None:
                return None
            operation, node_index = history[0], history[1]
            if isinstance(operation, keras.layers.InputLayer):
                return None  # an input other than the model's own
            inputs = operation._inbound_nodes[node_index].input_tensors
            if len(inputs) != 1:
                return None
            if isinstance(operation, keras.Model):
                inner = chain(operation)
                if inner is None:
                    return None
                found.extend(reversed(inner))
            elif isinstance(operation, keras.layers.Layer) and not children(operation):
                found.append(operation)
            else:
                return None
            tensor = inputs[0]
        return found[::-1]

    found = chain(model)
    if not found or len({id(layer) for layer in found}) != len(found):
        return None
    return found


def pooled_relu(conv, pool) -> bool:
    """Whether `conv` then `pool` is a Conv2D whose activation is a plain ReLU followed by a max pool:
    the pair whose ReLU gradient `forward` takes at the pool's output."""
    import keras

    return (type(conv) is keras.layers.Conv2D and conv.activation is keras.activations.relu
            and type(pool) is keras.layers.MaxPooling2D)


def forward(chain: list):
    """inputs -> the output of the last of `chain` (see layers), computed layer by layer as Keras
    computes them (inference mode), with each pooled ReLU's gradient taken at the pool (see the module
    doc)."""
    steps, i = [], 0
    while i < len(chain):
        if i + 1 < len(chain) and pooled_relu(chain[i], chain[i + 1]):
            steps.append(_conv_relu_pool(chain[i], chain[i + 1]))
            i += 2
        else:
            layer = chain[i]
            steps.append(lambda x, layer=layer: layer(x, training=False))
            i += 1

    def run(inputs):
        for step in steps:
            inputs = step(inputs)
        return inputs

    return run


def _conv_relu_pool(conv, pool):
    """x -> pool(relu(conv(x))) as the layers compute it, whose gradient by x masks the incoming gradient
    by the pool's output > 0 before the pool's gradient and skips the ReLU's (the same numbers)."""
    import keras
    import tensorflow as tf

    dtype = conv.compute_dtype
    bias_shape = (1,) * (conv.rank + 1) + (conv.filters,)

    def run(x):
        # the weights enter as values (the layer casts them to its compute type the same way)
        weights = [tf.cast(conv.kernel, dtype)] + ([tf.cast(conv.bias, dtype)] if conv.use_bias else [])
        return block(tf.cast(x, dtype), *weights)

    @tf.custom_gradient
    def block(x, kernel, bias=None):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            pre = conv.convolution_op(x, kernel)
            if bias is not None:
                pre = keras.ops.add(pre, keras.ops.reshape(bias, bias_shape))
            out = conv.activation(pre)
            tape.watch(out)
            pooled = pool.call(out)

        def gradient(upstream):  # by x only (the weights get none)
            upstream = tf.raw_ops.ReluGrad(gradients=upstream, features=pooled)  # the ReLU's mask, at the pool
            into_pool = tape.gradient(pooled, out, output_gradients=upstream)
            return (tape.gradient(pre, x, output_gradients=into_pool),) + (None,) * (2 if bias is not None else 1)

        return pooled, gradient

    return run
