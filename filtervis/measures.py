"""The numbers computed on a batch: what a layer's units give for each image's own filter or class,
and the image regularizers (total variation and the Lp norm), values and gradients, in one place.

Sign convention: layer measures are what is *maximized* (larger is better) and regularizers what is
*minimized*. Every function takes batched tensors and returns one value per image, shape [B]. Images
are in [0, 1], NHWC, with 1, 3 or 4 channels.
"""

from __future__ import annotations

import tensorflow as tf

from . import exact


def channel(outputs, filters):
    """Spatial mean of each image's own filter: `outputs` [B, ..., C], `filters` [B] int -> [B]."""
    axes = list(range(1, len(outputs.shape) - 1))
    means = tf.reduce_mean(outputs, axis=axes) if axes else outputs
    return tf.gather(means, filters, axis=1, batch_dims=1)


def centre(outputs):
    """The centre unit of every channel, [B, H, W, C] -> [B, 1, 1, C]; other shapes are returned as they are."""
    if len(outputs.shape) != 4:
        return outputs
    y, x = outputs.shape[1] // 2, outputs.shape[2] // 2
    return outputs[:, y:y + 1, x:x + 1, :]


def neuron(outputs, filters):
    """The centre unit of each image's own filter: `outputs` [B, H, W, C] (or [B, C]), `filters` [B] -> [B]."""
    return channel(centre(outputs), filters)


LAYER_MEASURES = {"channel": channel, "neuron": neuron}  # what each filter maximizes, by `--objective` name


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


def class_lead(logits, classes):
    """How far each image's own class is ahead of the runner-up: its logit minus the highest of the other
    classes' logits, `logits` [B, K], `classes` [B] int -> [B]. Above 0 exactly when the class alone wins
    the argmax of the model's output (the softmax keeps the logits' order), whatever the number of
    classes; 0 on a tie, below 0 when another class wins."""
    own = tf.gather(logits, classes, axis=1, batch_dims=1)
    mask = tf.one_hot(classes, tf.shape(logits)[1], on_value=True, off_value=False)
    return own - tf.reduce_max(tf.where(mask, tf.fill(tf.shape(logits), -float("inf")), logits), axis=1)


def class_leads(logits):
    """Every class's lead (see class_lead) for every image: `logits` [B, K] -> [B, K]."""
    count = logits.shape[-1]
    others = logits[:, None, :] + tf.where(tf.eye(count, dtype=tf.bool), -float("inf"), 0.0)  # [B, K (own), K]
    return logits - tf.reduce_max(others, axis=-1)


def gram_similarity(features, group: int, fixed: bool = False):
    """How alike each image's feature statistics are to those of the other images of its group
    (--diversity): `features` [B, ..., C] with B a multiple of `group` (images g*group ... belong
    together) -> [B], the mean cosine between the image's flattened Gram matrix (channel by channel
    products summed over places) and each other group member's, in [0, 1] for non-negative features.
    With `fixed`, the other members count as constants (see group_similarity).

    Each Gram matrix is computed on its own image and each group's cosines on that group alone, so an
    image's value does not depend on the batch (see exact.py)."""
    channels = features.shape[-1]
    grams = []
    for i in range(features.shape[0]):
        flat = tf.reshape(features[i], [-1, channels])
        grams.append(tf.reshape(tf.matmul(flat, flat, transpose_a=True), [-1]))
    return group_similarity(tf.stack(grams), group, fixed)


def group_similarity(vectors, group: int, fixed: bool = False):
    """[B, D] `vectors` with B a multiple of `group` (rows g*group ... belong together) -> [B], the mean
    cosine between each row and the other rows of its group (in [0, 1] for non-negative rows). Each
    group's cosines are computed on that group alone, so a row's value does not depend on the batch.
    With `fixed`, each row's value has a gradient with respect to that row only (the other rows are
    constants in it), so a penalty on it moves every row by its own term alone."""
    batch = vectors.shape[0]
    if batch % group:
        raise ValueError(f"a batch of {batch} images does not split into groups of {group}")
    out = []
    for first in range(0, batch, group):
        members = vectors[first:first + group]  # [group, D]
        unit = members / (tf.norm(members, axis=1, keepdims=True) + 1e-12)
        cosines = tf.matmul(unit, tf.stop_gradient(unit) if fixed else unit, transpose_b=True)  # 1 on the diagonal
        out.append((tf.reduce_sum(cosines, axis=1) - tf.linalg.diag_part(cosines)) / (group - 1))
    return tf.concat(out, axis=0)


def share_of_best(values, group: int):
    """[B] `values` with B a multiple of `group` -> [B], each value divided by the largest of its group
    (rows g*group ...; 0 where that is not positive), without gradient."""
    members = tf.reshape(values, [-1, group])
    best = tf.reduce_max(members, axis=1, keepdims=True)
    share = tf.where(best > 0, members / tf.where(best > 0, best, 1.0), 0.0)
    return tf.stop_gradient(tf.reshape(share, [-1]))


def gate(values, low: float, high: float):
    """0 at or below `low`, 1 at or above `high`, linear between."""
    return tf.clip_by_value((values - low) / (high - low), 0.0, 1.0)


# --- regularizers ---------------------------------------------------------------------------------

def total_variation(images):
    """Mean absolute difference between neighbouring pixels (anisotropic L1), per image, in [0, 2]."""
    dy = tf.reduce_mean(tf.abs(images[:, 1:, :, :] - images[:, :-1, :, :]), axis=[1, 2, 3])
    dx = tf.reduce_mean(tf.abs(images[:, :, 1:, :] - images[:, :, :-1, :]), axis=[1, 2, 3])
    return dx + dy


RANGE_LOGIT = 4.0  # colour values whose logit lies beyond +-this (below 4.6 or above 250.4 of 255) are out of range


def range_excess(images):
    """Per image: the mean, over its channel values, of the square of how far each value's logit lies
    beyond +-RANGE_LOGIT (0 inside): a penalty on it keeps colours off 0 and 255 (clipped colour) while
    leaving every value inside alone. The logit's gradient undoes a sigmoid's, so with a sigmoid
    parameterization the penalty acts on the parameters' colour directly, where the objective's gradient
    has vanished."""
    values = tf.clip_by_value(images, 1e-6, 1.0 - 1e-6)
    return logit_excess(exact.per_image(lambda x: tf.math.log(x) - tf.math.log1p(-x), values))


def logit_excess(logits):
    """range_excess of the image whose values' logits are `logits` [B, H, W, C] (a sigmoid
    parameterization's values before its sigmoid, see params.Fourier.logits): the same measure without
    taking the logits back from the image (a sixth of the element-wise work of a step's penalty), and
    without the clip at 1e-6 from 0 and 1 that leaves values past it without a gradient."""
    return tf.reduce_mean(tf.square(tf.nn.relu(tf.abs(logits) - RANGE_LOGIT)), axis=[1, 2, 3])


def lp_norm(images, p: float):
    """(mean |2 (x - 0.5)|^p)^(1/p) per image, in [0, 1]: 0 for mid-grey, 1 when saturated everywhere.
    A whole `p` (the default 6) is raised by repeated multiplication: the same value, three times
    faster than a general power (measured under XLA on a CPU)."""
    centred = tf.abs(2.0 * (images - 0.5)) + 1e-8
    if float(p) != int(p) or not 1 <= p <= 64:
        return tf.reduce_mean(centred ** p, axis=[1, 2, 3]) ** (1.0 / p)
    power, base, exponent = None, centred, int(p)
    while exponent:
        if exponent & 1:
            power = base if power is None else power * base
        base, exponent = base * base, exponent >> 1
    return tf.reduce_mean(power, axis=[1, 2, 3]) ** (1.0 / p)


def penalties(images, p: float):
    """(total_variation, lp_norm) of `images` [B, H, W, C], [B] each, with their gradient. Both and
    their gradients are computed in one XLA-compiled function: unfused, these image-sized element-wise
    ops cost as much as a small conv layer on a CPU."""

    @tf.custom_gradient
    def apply(images):
        tv, lp, tv_grad, lp_grad = _penalties_with_gradients(images, float(p))

        def grad(d_tv, d_lp):
            return _combine(d_tv, tv_grad, d_lp, lp_grad)

        return (tv, lp), grad

    return apply(images)


def penalty(images, tv_weight, lp_weight, p: float):
    """tv_weight * total_variation + lp_weight * lp_norm per image, [B] (weights: numbers or [B]),
    through `penalties`."""
    tv, lp = penalties(images, p)
    return tv_weight * tv + lp_weight * lp


@tf.function(jit_compile=True, reduce_retracing=True)
def _penalties_with_gradients(images, p: float):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        tv = total_variation(images)
        lp = lp_norm(images, p)
    return tv, lp, tape.gradient(tv, images), tape.gradient(lp, images)


def _combine(d_tv, tv_grad, d_lp, lp_grad):
    # Not XLA: compiled, a * b + c * d becomes fused multiply-adds on whole SIMD vectors but not on the
    # values left over at the end, so an image's gradient would depend on the batch (see exact.py).
    return tf.reshape(d_tv, [-1, 1, 1, 1]) * tv_grad + tf.reshape(d_lp, [-1, 1, 1, 1]) * lp_grad
