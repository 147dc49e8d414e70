"""The model stage: load or describe a Keras model (`load`, `describe`), preprocess its input
(`preprocess_fn`), find and list its layers (`graph`), cut the model at one (`cut`). Names are handed on
from the modules."""

from .describe import CHANNEL_NAMES, IMAGE_CHANNELS, LoadedModel, describe, guess_preprocess, parse_size  # noqa: F401
from .graph import (ALL_LAYERS, KIND_CHANNELS, KIND_UNITS, LayerInfo, check_visualizable, filter_count,  # noqa: F401
                    find_layer, is_pattern, layer_shapes, list_layers, select_layers, walk)
from .cut import Cut, cut  # noqa: F401
from .passes import (BATCHED_LAYERS, SPLIT_POSITIONS, batched_chains, batched_passes, is_elementwise,  # noqa: F401
                     own_channel, per_image, slices)
from .load import (APPLICATIONS, HED_WEIGHTS_FILE, OWN_WEIGHTS, Application, at_size, hed_weights_path,  # noqa: F401
                   load, load_hed_weights, runs_on)
from .preprocess import PREPROCESS_MODES, check_preprocess, preprocess_fn  # noqa: F401
from .precision import PRECISIONS, Precision, auto_precision, own_precision  # noqa: F401
from .precision import apply as apply_precision  # noqa: F401
