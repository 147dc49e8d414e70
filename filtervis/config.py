"""Run settings: named immutable defaults, the frozen RunSpec, filter specs and TOML config files."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError, SpecError

DEFAULT_MODEL = "vgg16"
DEFAULT_WEIGHTS = "imagenet"
DEFAULT_FILTERS = "all"
DEFAULT_STEPS = 128
DEFAULT_LR = 0.05
DEFAULT_SIZE = 224  # used when the model's input size is undefined
DEFAULT_TV_WEIGHT = 0.0  # fft and the transforms regularize; TV starves early filters of detail
DEFAULT_LP_WEIGHT = 0.0
DEFAULT_LP_NORM = 6.0
DEFAULT_JITTER = 4
DEFAULT_SEED = 0
DEFAULT_COLS = 8
DEFAULT_OUT = "filtervis-out"
DEFAULT_EARLY_STOP = 0.0  # off: every filter runs --steps
_BYTE_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
PREPROCESS_MODES = ("unit", "caffe", "tf", "torch", "none")  # or package.module:callable (models.preprocess_fn)
MIN_SIZE = 8  # pixels: the smallest image side
PARAMS = ("auto", "pixel", "fft", "maco")  # auto: chosen from the layer's depth (see params.resolve)
DEFAULT_PARAM = "auto"
DEFAULT_DECAY = 1.0  # fft: spectrum amplitude falls as 1/frequency^decay
TRANSFORMS = ("standard", "none")
DEFAULT_TRANSFORMS = "standard"
FAIL_ON = ("never", "unconverged", "dead")  # --fail-on: exit code 4 when any filter is unconverged / dead
DEFAULT_FAIL_ON = "never"
METRICS = ("pixel", "perceptual")  # filtervis diff --metric (see diff.py)
DEFAULT_METRIC = "pixel"
OBJECTIVES = ("channel", "neuron")
DEFAULT_OBJECTIVE = "channel"
DEFAULT_DIVERSITY = 1  # pictures per filter
MAX_DIVERSITY = 16


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything one `filtervis run` needs. `size=None` and `batch=None` mean "choose for me"."""

    layers: tuple[str, ...]
    model: str = DEFAULT_MODEL
    weights: str = DEFAULT_WEIGHTS
    preprocess: str | None = None  # a PREPROCESS_MODES name or package.module:callable
    filters: str = DEFAULT_FILTERS
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    size: tuple[int, int] | None = None  # (height, width); parse_size reads `96` or `128x96` (width x height)
    tv_weight: float = DEFAULT_TV_WEIGHT
    lp_weight: float = DEFAULT_LP_WEIGHT
    lp_norm: float = DEFAULT_LP_NORM
    jitter: int = DEFAULT_JITTER
    seed_image: str | None = None
    param: str = DEFAULT_PARAM
    decay: float = DEFAULT_DECAY
    transforms: str = DEFAULT_TRANSFORMS
    objective: str = DEFAULT_OBJECTIVE
    rescue: bool = True
    tile: bool = True  # start each picture as a half-size tile (see tiles.py)
    gif: bool = False
    alpha: bool = False  # RGBA (LA) PNGs whose alpha is the accumulated input-gradient magnitude
    diversity: int = DEFAULT_DIVERSITY  # pictures per filter, pushed apart from each other
    seed: int = DEFAULT_SEED
    batch: int | None = None
    memory_budget: int | None = None  # bytes; None: a share of the machine's (or GPU's) memory
    early_stop: float = DEFAULT_EARLY_STOP
    cols: int = DEFAULT_COLS
    out: str = DEFAULT_OUT
    quiet: bool = False
    resume: bool = False  # skip filters an earlier run with the same parameters finished
    shard: tuple[int, int] | None = None  # (K, N): render only the K-th of N parts of the filter list
    unsafe_model: bool = False  # let a model file run Python code (Lambda layers) when loaded
    input: str | None = None  # the image input of a multi-input model (the others are held at zeros)
    report: bool = True  # rebuild OUT/index.html with every manifest write (see report.py)

    def __post_init__(self):
        if self.size is not None and not isinstance(self.size, tuple):
            object.__setattr__(self, "size", parse_size(self.size))  # 96 or "128x96" from Python
        checks = [
            (bool(self.layers), "--layer is required: name at least one layer (`filtervis layers` lists them)"),
            (self.steps >= 1, f"--steps must be 1 or more, but was {self.steps}"),
            (self.lr > 0, f"--lr must be above 0, but was {self.lr}"),
            (self.size is None or min(self.size) >= MIN_SIZE,
             f"--size must be {MIN_SIZE} or more pixels each way, but was {size_text(self.size or (0, 0))}"),
            (self.tv_weight >= 0, f"--tv-weight must be 0 or more, but was {self.tv_weight}"),
            (self.lp_weight >= 0, f"--lp-weight must be 0 or more, but was {self.lp_weight}"),
            (self.lp_norm >= 1, f"--lp-norm must be 1 or more, but was {self.lp_norm}"),
            (self.jitter >= 0, f"--jitter must be 0 or more pixels, but was {self.jitter}"),
            (self.batch is None or self.batch >= 1, f"--batch must be 1 or more (or 'auto'), but was {self.batch}"),
            (self.memory_budget is None or self.memory_budget > 0,
             f"--memory-budget must be above 0, but was {self.memory_budget}"),
            (0 <= self.early_stop < 1, f"--early-stop must be in [0, 1) (0: off), but was {self.early_stop}"),
            (self.cols >= 1, f"--cols must be 1 or more, but was {self.cols}"),
            (self.preprocess is None or self.preprocess in PREPROCESS_MODES or _is_callable_name(self.preprocess),
             f"--preprocess must be one of {', '.join(PREPROCESS_MODES)} or package.module:callable, "
             f"but was {self.preprocess!r}"),
            (self.param in PARAMS, f"--param must be one of {', '.join(PARAMS)}, but was {self.param!r}"),
            (self.decay >= 0, f"--decay must be 0 or more, but was {self.decay}"),
            (self.transforms in TRANSFORMS,
             f"--transforms must be one of {', '.join(TRANSFORMS)}, but was {self.transforms!r}"),
            (self.objective in OBJECTIVES,
             f"--objective must be one of {', '.join(OBJECTIVES)}, but was {self.objective!r}"),
            (isinstance(self.diversity, int) and not isinstance(self.diversity, bool)
             and 1 <= self.diversity <= MAX_DIVERSITY,
             f"--diversity must be a whole number from 1 to {MAX_DIVERSITY} (pictures per filter), "
             f"but was {self.diversity!r}"),
        ]
        if self.shard is not None:
            parse_shard(f"{self.shard[0]}/{self.shard[1]}")
        for ok, message in checks:
            if not ok:
                raise SpecError(message)
        parse_filters(self.filters)


def _is_callable_name(text: str) -> bool:
    module, _, name = str(text).partition(":")
    return bool(module) and name.isidentifier() and all(part.isidentifier() for part in module.split("."))


_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*$")


def parse_size(text) -> tuple[int, int] | None:
    """`--size`: `96` -> (96, 96); `128x96` (width x height) -> (96, 128) as (height, width); None stays
    None. Raises SpecError naming the fix."""
    if text is None or isinstance(text, tuple):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    match = _SIZE.match(str(text))
    if not match:
        raise SpecError(f"--size {text!r} is not a size; give pixels as 96 (square) or 128x96 (width x height)")
    width = int(match.group(1))
    height = int(match.group(2)) if match.group(2) else width
    if min(width, height) < MIN_SIZE:
        raise SpecError(f"--size must be {MIN_SIZE} or more pixels each way, but was {text}")
    return (height, width)


def size_text(size) -> int | str:
    """(height, width) as `--size` writes it: an int when square, else `WxH`."""
    height, width = size
    return int(height) if height == width else f"{width}x{height}"


def parse_bytes(text) -> int | None:
    """`auto` -> None; `4G`, `512M`, `1.5GB`, `2048` (bytes) -> bytes. Raises SpecError."""
    value = str(text).strip().upper()
    if value == "AUTO":
        return None
    match = re.match(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?$", value)
    if not match:
        raise SpecError(f"--memory-budget {text!r} is not a size; use auto, 4G, 512M or a number of bytes")
    number = int(float(match.group(1)) * _BYTE_UNITS[match.group(2)])
    if number <= 0:
        raise SpecError(f"--memory-budget must be above 0, but was {text!r}")
    return number


# --- filter specs ---------------------------------------------------------------------------------

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_RANDOM = re.compile(r"^random:(\d+)$")
_SPEC_HELP = "use all, 0-63, 3,7,9, 0-7,12 or random:16"


@dataclasses.dataclass(frozen=True)
class FilterSpec:
    """A parsed `--filters` value: `random` > 0 draws that many; otherwise `indices` (None means all)."""

    text: str
    indices: tuple[int, ...] | None = None
    random: int = 0

    def resolve(self, count: int, seed: int, layer: str = "") -> list[int]:
        """Filter indices for a layer with `count` filters, sorted; raises SpecError past the count."""
        where = f" '{layer}'" if layer else ""
        if self.random:
            if self.random > count:
                raise SpecError(f"--filters {self.text} asks for {self.random} filters but the layer{where} "
                                f"has only {count}; use random:{count} or fewer")
            import numpy as np

            return sorted(int(i) for i in np.random.default_rng(seed).choice(count, self.random, replace=False))
        if self.indices is None:
            return list(range(count))
        bad = [i for i in self.indices if i >= count]
        if bad:
            raise SpecError(f"filter index {bad[0]} is past the {count} filters of layer{where} (valid: 0-{count - 1})")
        return list(self.indices)


def parse_filters(text: str) -> FilterSpec:
    """Parse `all`, `0-63`, `3,7,9`, `0-7,12` or `random:16`; raises SpecError naming the bad part."""
    text = str(text).strip()
    if text == "all":
        return FilterSpec(text)
    match = _RANDOM.match(text)
    if match:
        n = int(match.group(1))
        if n < 1:
            raise SpecError(f"--filters {text}: random needs 1 or more filters; {_SPEC_HELP}")
        return FilterSpec(text, random=n)
    indices: set[int] = set()
    for part in text.split(","):
        match = _RANGE.match(part.strip())
        if not match:
            raise SpecError(f"--filters {text!r}: cannot read {part!r}; {_SPEC_HELP}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise SpecError(f"--filters {text!r}: range {part!r} runs backwards; write {hi}-{lo}")
        indices.update(range(lo, hi + 1))
    return FilterSpec(text, indices=tuple(sorted(indices)))


_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` (1 <= K <= N) -> (K, N); raises SpecError naming the fix."""
    match = _SHARD.match(str(text))
    if not match:
        raise SpecError(f"--shard {text!r} is not K/N; write e.g. 1/4 for the first of 4 parts")
    k, n = int(match.group(1)), int(match.group(2))
    if not 1 <= k <= n:
        raise SpecError(f"--shard {text}: K must be between 1 and N={n}, but was {k}")
    return k, n


def shard_part(items: list, shard: tuple[int, int] | None) -> list:
    """The K-th of N disjoint parts of `items`: every N-th item from position K-1 (round robin, so the
    parts differ in length by at most one and depend only on `items`). None means all of them."""
    if shard is None:
        return list(items)
    k, n = shard
    return list(items[k - 1::n])


# --- config files ---------------------------------------------------------------------------------

def load_config(path: str | Path, known_keys: set[str]) -> dict:
    """Read a TOML config; keys are option names (`tv-weight` or `tv_weight`). Returns {param_name: value}."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path (presets live in configs/)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give a .toml file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known_keys:
            raise ConfigError(f"config file {path}: unknown key '{key}'; known keys: "
                              f"{', '.join(sorted(k.replace('_', '-') for k in known_keys))}")
        if isinstance(value, dict):
            raise ConfigError(f"config file {path}: key '{key}' is a table; give a plain value")
        values[name] = value
    return values
