"""What is maximized, and the regularizers. Sign convention: objectives return what is *maximized*
(larger is better) and regularizers return what is *minimized*; `optimize` negates once.

All functions take batched tensors and return one value per image, shape [B].
Images are RGB in [0, 1], NHWC.
"""

from __future__ import annotations

import tensorflow as tf

from . import exact
from .config import DEFAULT_OBJECTIVE  # noqa: F401


def channel(outputs, filters):
    """Spatial mean of each image's own filter: `outputs` [B, ..., C], `filters` [B] int -> [B]."""
    axes = list(range(1, len(outputs.shape) - 1))
    means = tf.reduce_mean(outputs, axis=axes) if axes else outputs
    return tf.gather(means, filters, axis=1, batch_dims=1)


def soft_relu(preactivation, temperature):
    """temperature * softplus(x / temperature): a ReLU whose gradient is largest for the units closest
    to firing. `temperature` broadcasts against `preactivation`."""
    return temperature * exact.per_image(tf.nn.softplus, preactivation / temperature)


def start_objective(preactivation, filters, temperature):
    """What a silent filter maximizes until it fires: the spatial mean of `soft_relu` of its
    pre-activation. The temperature grows (never shrinks below `temperature`) to half the distance of
    the image's best unit below zero, so the gradient never vanishes however dead the filter is.
    `preactivation` [B, ..., C], `filters` [B], `temperature` [B] -> [B]."""
    values = tf.gather(preactivation, filters, axis=-1, batch_dims=1)  # [B, ...]
    flat = tf.reshape(values, [tf.shape(values)[0], -1])
    best = tf.stop_gradient(tf.reduce_max(flat, axis=1))
    t = tf.maximum(temperature, -best / 2.0)
    return tf.reduce_mean(soft_relu(flat, t[:, None]), axis=1)


def started(activation, start, threshold):
    """The objective with a start for dead filters: while an image's filter is (nearly) silent
    (`activation` at or below `threshold`, so a ReLU passes little or no gradient), follow `start`
    (`start_objective` of its pre-activation) instead. All [B] -> [B]."""
    return tf.where(activation > threshold, activation, start)


def total_variation(images):
    """Mean absolute difference between neighbouring pixels (anisotropic L1), per image, in [0, 2]."""
    dy = tf.reduce_mean(tf.abs(images[:, 1:, :, :] - images[:, :-1, :, :]), axis=[1, 2, 3])
    dx = tf.reduce_mean(tf.abs(images[:, :, 1:, :] - images[:, :, :-1, :]), axis=[1, 2, 3])
    return dx + dy


def lp_norm(images, p):
    """(mean |2 (x - 0.5)|^p)^(1/p) per image, in [0, 1]: 0 for mid-grey, 1 when saturated everywhere."""
    centred = tf.abs(2.0 * (images - 0.5)) + 1e-8
    return tf.reduce_mean(centred ** p, axis=[1, 2, 3]) ** (1.0 / p)


def centre(outputs):
    """The centre unit of every channel, [B, H, W, C] -> [B, 1, 1, C]; other shapes are returned as they are."""
    if len(outputs.shape) != 4:
        return outputs
    y, x = outputs.shape[1] // 2, outputs.shape[2] // 2
    return outputs[:, y:y + 1, x:x + 1, :]


def neuron(outputs, filters):
    """The centre unit of each image's own filter: `outputs` [B, H, W, C] (or [B, C]), `filters` [B] -> [B]."""
    return channel(centre(outputs), filters)


def class_margin(logits, classes):
    """How far each image's own class leads the others: its logit minus the log-sum-exp of the other
    classes' logits, `logits` [B, K], `classes` [B] int -> [B]. Positive exactly when the softmax ranks the
    class first with a probability above 1/2 (it is the log-odds of that probability). Maximizing the
    logit alone can raise the other classes as much (logits of a trained head are correlated); the
    margin cannot grow that way."""
    own = tf.gather(logits, classes, axis=1, batch_dims=1)
    mask = tf.one_hot(classes, tf.shape(logits)[1], on_value=True, off_value=False)
    others = tf.where(mask, tf.fill(tf.shape(logits), -1e9), logits)
    return own - tf.reduce_logsumexp(others, axis=1)


def class_margins(logits):
    """Every class's margin (see class_margin) for every image: `logits` [B, K] -> [B, K]."""
    count = logits.shape[-1]
    others = logits[:, None, :] + tf.where(tf.eye(count, dtype=tf.bool), -1e9, 0.0)  # [B, K (own), K]
    return logits - tf.reduce_logsumexp(others, axis=-1)


OBJECTIVES = {"channel": channel, "neuron": neuron}  # keys: config.OBJECTIVES


def get(name: str):
    """The objective called `name` (a key of OBJECTIVES): a function (outputs, filters) -> [B]."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; use one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
