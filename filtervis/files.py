"""Files on disk as filtervis writes and reads them: the names in a layer folder (filter pictures,
manifests and palettes of whole runs and of --shard parts, safe folder names for layer paths), atomic
writes (a file on disk is always whole), PNGs, manifests as JSON, and whether --out can be written.
What to write and when is store.py's.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from . import images
from .errors import OutputError

MANIFEST = "manifest.json"
PALETTE = "palette.png"
MAX_DIRNAME = 100  # characters of a layer folder name; longer names are cut and get a hash suffix
_SHARD_FILE = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.json$")


def manifest_name(shard: tuple[int, int] | None = None) -> str:
    """`manifest.json`, or `manifest.shard-K-of-N.json` for shard (K, N)."""
    return MANIFEST if shard is None else f"manifest.shard-{shard[0]}-of-{shard[1]}.json"


def palette_name(shard: tuple[int, int] | None = None) -> str:
    """`palette.png`, or `palette.shard-K-of-N.png` for shard (K, N)."""
    return PALETTE if shard is None else f"palette.shard-{shard[0]}-of-{shard[1]}.png"


def manifest_files(folder: Path) -> list[Path]:
    """The manifests in a layer folder: manifest.json first, then shard manifests by K."""
    folder = Path(folder)
    shards = sorted((p for p in folder.glob("manifest.shard-*.json") if _SHARD_FILE.match(p.name)),
                    key=lambda p: tuple(int(g) for g in _SHARD_FILE.match(p.name).groups()[::-1]))
    main = folder / MANIFEST
    return ([main] if main.is_file() else []) + shards


def layer_dirname(path: str) -> str:
    """A safe folder name for a layer path: `outer/inner` -> `outer__inner`.

    Only letters, digits, `.`, `_` and `-` survive; never `.`, `..` or a path, and at
    most MAX_DIRNAME characters (a longer name is cut and gets a hash of the whole name), so the
    folder always lands directly inside --out.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.replace("/", "__"))
    if not name.strip("."):
        name = "layer_" + name.replace(".", "_")
    if len(name) > MAX_DIRNAME:
        name = name[:MAX_DIRNAME - 9] + "_" + hashlib.sha256(path.encode()).hexdigest()[:8]
    return name


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


def _write_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left on the device writing {path}; free some space (or choose another "
                           "--out) and rerun with --resume to keep what is finished")
    return OutputError(f"cannot write {path} ({exc.strerror or exc}); choose a writable --out")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync and a rename.

    On any failure the temporary file is removed and `path` keeps its old content (or stays absent);
    an OSError becomes an OutputError saying what to do.
    """
    path = Path(path)
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(handle, 0o666 & ~_umask())  # an ordinary new file's permissions, not mkstemp's 0600
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except OSError as exc:
        if temp:
            Path(temp).unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        if temp:
            Path(temp).unlink(missing_ok=True)
        raise


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of a uint8 [H, W, C] image, C 1 -> 8-bit L, 3 -> RGB, 4 -> RGBA (deterministic: same pixels,
    same bytes). ValueError for any other shape or dtype."""
    buffer = io.BytesIO()
    images.to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: Path, image: np.ndarray) -> None:
    """`png_bytes(image)` written atomically to `path` (see `atomic_write`)."""
    atomic_write(path, png_bytes(image))


def read_png(path: Path, alpha: bool = False) -> np.ndarray:
    """A PNG as uint8 [H, W, C] keeping its channels: L -> C = 1, RGB -> 3, RGBA -> 4, and with `alpha`
    (a run's --alpha PNGs) LA -> 2; any other mode (palette, grey with alpha, 16-bit, ...) is converted
    to RGB."""
    with Image.open(path) as image:
        if image.mode not in (images.TILE_MODES if alpha else images.MODES).values():
            image = image.convert("RGB")
        return images.from_pil(image)


def write_manifest(folder: Path, manifest: dict, name: str = MANIFEST) -> None:
    atomic_write(Path(folder) / name, (json.dumps(manifest, indent=2) + "\n").encode())


def read_manifest(path: Path) -> dict:
    """A manifest as a dict; OutputError when it is not one filtervis wrote."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"{path} is not a readable manifest ({type(exc).__name__}); delete it and "
                          "rerun without --resume") from None
    if not isinstance(data, dict) or not isinstance(data.get("filters"), list) or "params" not in data:
        raise OutputError(f"{path} is not a filtervis manifest; delete it and rerun without --resume")
    return data


def file_digest(path: str | Path) -> str | None:
    """sha256 hex digest of a file, None when `path` is not a file."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
