"""The user's start pictures (`--seed-image`): an image file for every filter, or the layer folder of an
earlier run (its filter_NNNN.png each), read at the pictures' size and hashed (`read`: what the manifest
records of each start); options.RunSpec checks that the path exists before a model is loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from . import images
from .errors import SpecError
from .filters import filter_filename


def read(path: str, units, image_shape) -> tuple[dict, dict]:
    """({unit: start picture [H, W, C] float32 in [0, 1]}, {unit: its sha256}): one image file for every
    unit, or a folder of a previous run's filter_NNNN.png."""
    source = Path(path)
    if source.is_dir():
        files = {f: source / filter_filename(f) for f in units}
        missing = [f for f, file in files.items() if not file.is_file()]
        if missing:
            raise SpecError(f"--seed-image folder {source} has no {filter_filename(missing[0])}; "
                            "give the layer folder of a run over the same filters, or one image file")
    elif source.is_file():
        files = dict.fromkeys(units, source)
    else:
        raise SpecError(f"--seed-image {source} does not exist; give an image file or a folder of filter PNGs")
    starts = {}
    for f, file in files.items():
        try:
            starts[f] = images.load_image(str(file), image_shape)
        except Exception as exc:
            raise SpecError(f"--seed-image {file} is not a readable image ({type(exc).__name__}); "
                            "give a PNG or JPEG") from None
    digests = {f: hashlib.sha256(np.ascontiguousarray(start, np.float32).tobytes()).hexdigest()
               for f, start in starts.items()}
    return starts, digests
