"""How a step's passes through a cut run: each image's own filter only, one image per pass, or a
chain's images in one pass.

- `own_channel`: when the cut ends in a plain Conv2D and its activation maps values one by one
  (`is_elementwise`), the kernel is sliced to the pass's filters (`slices`), so the layer computes one
  channel per image instead of all of them.
- `per_image`: each image in a pass of its own, so that its numbers do not depend on its batch.
- `batched_passes`, `batched_chains`: when a model computing in a lower type (--precision) runs a
  chain's images in one pass instead, and in how many chains.
"""

from __future__ import annotations

from . import chain
from .graph import walk


def is_elementwise(activation, shape) -> bool:
    """True when `activation` maps each value on its own (ReLU, GELU, ...), so that it can run on one
    filter's slice; False when a value depends on other filters (softmax over channels) or the
    activation is a layer with weights of its own (PReLU: one slope per channel, not per slice)."""
    import numpy as np
    import tensorflow as tf

    if getattr(activation, "weights", None):
        return False
    channels = int(shape[-1]) if shape[-1] else 2
    values = tf.random.stateless_normal([2] + [3] * (len(shape) - 2) + [max(channels, 2)], [7, 11]) * 3.0
    nudged = values + tf.one_hot(0, max(channels, 2)) * 1.5
    try:
        a, b = np.asarray(activation(values)), np.asarray(activation(nudged))
    except Exception:  # an activation that cannot take this shape
        return False
    return bool(np.allclose(a[..., 1:], b[..., 1:], rtol=0, atol=1e-6))


def slices(cut, batch: int = 1) -> bool:
    """Whether own_channel can slice the cut's last layer (a plain Conv2D of a graph cut with at
    least twice `batch` filters) so that it computes only the images' own filters."""
    import keras

    last = cut.model.layers[-1] if cut.model is not None else None
    return (type(last) is keras.layers.Conv2D and last.groups == 1 and last.data_format == "channels_last"
            and last.compute_dtype in ("float32", "bfloat16", "float16") and last.filters >= 2 * batch)


def own_channel(cut, batch: int):
    """A function (model input [B, H, W, C], filters [B] int, features=False) -> each image's own filter's
    pre-activation, [B, ..., 1] (the layer's spatial axes kept); with features=True also the feature maps
    of the pass (the sliced layer's input, or the whole layer's output).

    When the cut is a graph (`cut.model`) ending in a plain Conv2D (computing in float32, or in bfloat16
    or float16 under --precision) with at least twice `batch` filters, its kernel is sliced to the
    batch's filters: the layer computes `batch` channels per image instead of all of them, and the
    image's own one is kept. Otherwise the full layer runs and the own filter is picked out.
    """
    import keras
    import tensorflow as tf

    model = cut.model
    last = model.layers[-1] if model is not None else None
    if slices(cut, batch):
        try:
            prefix = keras.Model(model.inputs, last.input)
        except (ValueError, AttributeError):  # the layer is called more than once
            prefix = None
        if prefix is not None:
            layers = chain.layers(prefix)  # a plain chain runs layer by layer, with a cheaper gradient
            run = chain.forward(layers) if layers else (lambda inputs: prefix(inputs, training=False))
            return _sliced_conv(lambda images: run(cut.feed(images)), last)

    def pick(inputs, filters, features: bool = False):
        pre = cut.forward(inputs)
        own = tf.gather(pre, filters[:, None], axis=-1, batch_dims=1)
        return (own, cut.activation(pre)) if features else own

    return pick


def _sliced_conv(prefix, conv):
    """own_channel's function for a cut whose last layer is the Conv2D `conv`, `prefix` the cut up to its input."""
    import tensorflow as tf

    strides, dilations, padding = list(conv.strides), list(conv.dilation_rate), conv.padding.upper()
    low = conv.compute_dtype != "float32"  # --precision: the convolution runs in the layer's type

    def sliced(inputs, filters, features: bool = False):
        maps = prefix(inputs)
        kernel = tf.gather(conv.kernel, filters, axis=3)  # [kh, kw, in, B]
        if low:
            maps, kernel = tf.cast(maps, conv.compute_dtype), tf.cast(kernel, conv.compute_dtype)
        out = tf.nn.convolution(maps, kernel, strides=strides, padding=padding, dilations=dilations)
        own = tf.gather(out, tf.range(tf.shape(out)[0])[:, None], axis=3, batch_dims=1)  # image b, filter b
        if low:  # back to float32 before the bias, the activation and the objective's reduction
            own = tf.cast(own, tf.float32)
        if conv.use_bias:
            own += tf.reshape(tf.cast(tf.gather(conv.bias, filters), own.dtype), [-1, 1, 1, 1])
        return (own, tf.cast(maps, tf.float32)) if features else own

    return sliced


def per_image(function, inputs, items):
    """`function(inputs, items, slot)` -> a tuple of [b] values, computed on each image alone (a batch
    of one, `slot` its place in the batch) and concatenated. A CPU computes a convolution or matmul as
    one matrix product over all the batch's pixels, whose last rows (and the rows where the threads'
    shares meet) can take another code path (AVX2: a multiply and an add instead of a fused
    multiply-add); which rows those are depends on the batch size and the image's place in it. One
    image per pass keeps every image's numbers, forward and backward, independent of its batch; the
    passes are independent, so TensorFlow still runs them side by side."""
    import tensorflow as tf

    parts = [function(inputs[i:i + 1], items[i:i + 1], i) for i in range(inputs.shape[0])]
    return tuple(tf.concat(values, axis=0) for values in zip(*parts))


# The layers a one-pass step may hold: their bfloat16 kernels gave every image the same numbers in a pass
# of any size (VGG16 at 37-224 px, batches 1-6). A depthwise or separable convolution or a
# BatchNormalization (fer's) did not, after 48 steps: their cuts run each image alone.
BATCHED_LAYERS = ("InputLayer", "Conv2D", "MaxPooling2D", "ReLU", "Activation", "ZeroPadding2D", "Dropout")


def batched_passes(cut) -> bool:
    """Whether a step computes a chain's images in one pass rather than one by one (per_image), for a
    cut rendered by filter (not by class) whose model computes in a lower type (--precision bfloat16
    or float16: `cut.exact` is its float32 twin) and holds only BATCHED_LAYERS. A pass of one image
    leaves most of a low-precision matrix unit idle: on a CPU with AMX, four 128 px images cost 1.9x
    as much one by one as in one pass (VGG16 to block5_conv3), which would undo most of the lower
    type's gain. The pictures still do not depend on --batch (tests/test_precision.py checks it at odd
    sizes). Class heads (a matrix product over the batch) and float32 models keep per_image."""
    if cut.exact is None or cut.classes or cut.model is None:
        return False
    import keras

    return all(isinstance(layer, keras.Model) or type(layer).__name__ in BATCHED_LAYERS
               for _, layer in walk(cut.model))


# A one-pass step splits its batch into several chains when each chain's pass still has this many
# positions of the layer's output (images x height x width): then one chain's image work (transforms,
# parameterization, Adam) runs while the other's pass does. Below it a pass is too small for the
# matrix unit. VGG16 in bfloat16, batch 4, 2 chains: block3_conv1 at 224 px (2 x 56 x 56 per pass) 10%
# faster split; block5_conv3 at 224 px (2 x 14 x 14 = 392) 5% faster; at 128 px (2 x 8 x 8 = 128) 4%
# slower, and at batch 8 (256) 7% faster.
SPLIT_POSITIONS = 256


def batched_chains(cut, batch: int, chains: int) -> int:
    """How many chains a one-pass step (see batched_passes) runs `batch` images of `cut` in: `chains`
    when each chain's pass has at least SPLIT_POSITIONS positions of the layer's output, else 1."""
    import numpy as np

    positions = int(np.prod([d or 1 for d in cut.output_shape[:-1]]))
    return chains if batch // chains * positions >= SPLIT_POSITIONS else 1
