"""Element-wise math whose result for one image does not depend on the batch it is computed in.

A CPU computes element-wise functions (exp, sigmoid, softplus, cos, ...) on whole SIMD vectors and
the few values left over at the end of a tensor one at a time, and the two paths can round the last
bit differently. Which values of an image are left over depends on how many images come before it,
so the same filter would come out slightly differently, and after a few hundred steps visibly so, at
another --batch. `per_image` pads every image's values to a whole number of the widest vectors, so
every value takes the vector path whatever the batch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

WIDEST_VECTOR = 16  # float32 values in the widest SIMD register in use (AVX-512); a multiple of narrower ones


def per_image(function, values):
    """`function` (element-wise) applied to `values` [B, ...] (static shape after B), computed on
    every image's values padded to a multiple of WIDEST_VECTOR."""
    tail = values.shape[1:]
    if tail.is_fully_defined():
        count = int(np.prod(tail))
        if count % WIDEST_VECTOR == 0:
            return function(values)
    else:
        count = tf.reduce_prod(tf.shape(values)[1:])
    flat = tf.reshape(values, [-1, count])
    padded = tf.pad(flat, [[0, 0], [0, -count % WIDEST_VECTOR]])
    return tf.reshape(function(padded)[:, :count], tf.shape(values))
