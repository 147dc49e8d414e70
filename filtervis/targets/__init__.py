"""The objective stage: what the optimizer loop maximizes, compiled for a batch: each image's
objective, the start that wakes a silent filter, the regularizer weights, and each objective's
typical response to noise.

`compile_goals` (compiled.py) is the one entry: a layer's goals, as objectives (goals.py: `unit_goals`
is what `filtervis run` renders), become one of two targets with one interface:

- `LayerFilters` (layer.py, the fast path): one filter (or class) of one layer per image. Items are
  filter indices.
- `ObjectiveBatch` (general.py, the general path): any `objectives.Objective` per image, over one or more
  layers. Items are the objectives' places in the batch.

A target's `objective(inputs, items, slot)` runs one model pass (the Renderer calls it for each image
alone, see models.per_image); `loss` (loss.py) is what the optimizer minimizes; noise.py holds each
picture's random stream and the noise the scales are measured on. Names are handed on from the modules.
"""

from .compiled import Compiled, compile_goals  # noqa: F401
from .general import ObjectiveBatch  # noqa: F401
from .goals import (DIVERSITY_SHARE, RANGE_WEIGHT, PerFilter, check_groups, check_objective, per_filter,  # noqa: F401
                    ranged, unit_goals)
from .layer import LayerFilters  # noqa: F401
from .loss import DIVERSITY_GATE, colour_penalty, fires, loss  # noqa: F401
from .noise import (SCALE_IMAGES, START_THRESHOLD, VARIANT_SEED_STRIDE, filter_key, noise_images,  # noqa: F401
                    scale_noise, variant_key)
