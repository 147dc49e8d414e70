"""What a run leaves on disk, per layer under OUT/<layer>/: filter_NNNN.png, palette.png, manifest.json.

Every file is written to a temporary name in the same folder and renamed into place, so a file on
disk is always whole. The manifest is rewritten after each batch and lists exactly the PNGs written.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import OutputError

MANIFEST = "manifest.json"
PALETTE = "palette.png"


def filter_filename(index: int) -> str:
    return f"filter_{index:04d}.png"


def layer_dirname(path: str) -> str:
    """A safe folder name for a layer path: `outer/inner` -> `outer__inner`; never `.`/`..` or a path."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.replace("/", "__"))
    return name if name.strip(".") else f"layer_{name.replace('.', '_')}"


def check_writable(out: str | Path) -> None:
    """Raise OutputError unless `out` is (or can be made) a writable folder. Writes nothing that stays."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder; give a folder path")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"--out {out}: {probe} is a file, not a folder; give a folder path")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write in {probe} ({exc.strerror}); choose a writable folder") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    The file gets the permissions of an ordinary new file (0666 less the umask), not mkstemp's 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: Path, image: np.ndarray) -> None:
    atomic_write(path, png_bytes(image))


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
