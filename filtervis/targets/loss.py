"""What the optimizer minimizes for each image of a batch: a compiled target's objective (started
while silent), its diversity, colour-range and image terms, summed (`loss`).
"""

from __future__ import annotations

import tensorflow as tf

from .. import measures
from .noise import START_THRESHOLD

DIVERSITY_GATE = (0.5, 0.75)  # --diversity: the penalty applies in full while the picture's activation is at
# least the second share of its filter's best picture's, fading to none at the first, so no picture gives up its
# filter to be different


def fires(target, items, post):
    """[b]: 1.0 where an image's objective fires (`post` above START_THRESHOLD of its scale), else 0.0.
    The image terms (TV, the Lp norm, the colour range) apply only then: a silent filter's start is
    left to find it first."""
    return tf.cast(post > START_THRESHOLD * tf.gather(target.scales, items), tf.float32)


def loss(target, images, items, post, start, maps=None, group: int = 1, regularizers=None, colour_weights=None,
         logits=None):
    """What the optimizer minimizes for each image of a batch, [b]: the sum of its objective's terms as
    compiled.

    - the objective (`post`, softened into `start` while the filter is silent, see measures.started),
      negated and in units of the filter's typical response (`target.inverse_scales`);
    - its diversity term (`target.diversity`, the term's weight negated) with `group` > 1 (consecutive
      groups of pictures of one filter): the pictures' Gram similarity to the others of their group
      (`maps`: each image's feature maps), held fixed, `target.diversity` times the objective's size,
      gated by DIVERSITY_GATE;
    - its colour-range term with `colour_weights` (the terms' weights negated, per item; given for a
      sigmoid parameterization, with the images' `logits`): the weight times the colour out of range
      (measures.logit_excess: it reaches the parameters without passing through `images`, so the
      gradient of the loss by the images leaves it out);
    - with `regularizers` ((tv weights, lp weights, p) per item), TV and the Lp norm of `images`.

    The image terms apply once the objective fires (see fires)."""
    threshold = START_THRESHOLD * tf.gather(target.scales, items)
    value = -measures.started(post, start, threshold) * tf.gather(target.inverse_scales, items)
    if group > 1 and target.diversity:  # the pictures of one filter repel each other
        size = tf.stop_gradient(tf.abs(value))
        gate = measures.gate(measures.share_of_best(post, group), *DIVERSITY_GATE)
        value += gate * target.diversity * size * measures.gram_similarity(maps, group, fixed=True)
    fired = fires(target, items, post) if colour_weights is not None or regularizers is not None else None
    if colour_weights is not None:
        value += colour_penalty(logits, tf.gather(colour_weights, items), fired)
    if regularizers is not None:  # the defaults need neither TV nor Lp, nor their gradients
        tv_weights, lp_weights, p = regularizers
        penalty = measures.penalty(images, tf.gather(tv_weights, items), tf.gather(lp_weights, items), p)
        value += fired * penalty
    return value


def colour_penalty(logits, weights, fired):
    """[b]: `weights` times each image's colour out of range (measures.logit_excess of its values'
    `logits`) where its objective fires (`fired`, see fires). For sigmoid parameterizations only: on clipped pixels the
    logit's gradient grows without bound near 0 and 1 and fights the objective (a filter that wants
    white then fell short of converging)."""
    return fired * weights * measures.logit_excess(logits)
