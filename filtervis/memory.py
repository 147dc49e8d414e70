"""Memory planning: how many images a batch may hold within a budget (`--memory-budget`).

A plan counts what the process already holds, the noise pass, a margin for TensorFlow's runtime and,
per image, every layer output up to the target (its value and its gradient, 4 bytes each in float32, 2
under --precision bfloat16 or float16: a batch may hold about twice the images). Memory is read
from Linux's /proc (the process and the machine) or, with a GPU, from nvidia-smi.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from .targets import SCALE_IMAGES  # noise images of the noise pass

MAX_AUTO_BATCH = 16  # beyond this a batch no longer speeds up a step on a CPU
MAX_AUTO_BATCH_GPU = 64
BYTES_PER_ACTIVATION = 4 * 2  # per value of every layer output: the float32 value and its gradient
VALUE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # bytes of one value in the type the layers compute in
RUNTIME_MARGIN = 512 * 2**20  # bytes every plan keeps free for TensorFlow's own working memory
DEFAULT_MEMORY_SHARE = 0.25  # share of the machine's (or the GPU's) memory a run may plan to use


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """How a layer's batch was chosen: all sizes in bytes. `peak` is the planned peak of the process
    (or of the GPU): `base` (what is already in use) + `fixed` (the noise pass) + `batch * per_image`."""

    budget: int
    base: int
    fixed: int
    per_image: int
    batch: int

    @property
    def peak(self) -> int:
        return self.base + self.fixed + self.batch * self.per_image


def _meminfo(key: str) -> int | None:
    """A /proc/meminfo or /proc/self/status value in bytes (Linux), else None."""
    for path in ("/proc/meminfo", "/proc/self/status"):
        try:
            with open(path) as handle:
                for line in handle:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            continue
    return None


def available_memory() -> int:
    """Bytes of memory available now (Linux /proc/meminfo, else total physical memory)."""
    available = _meminfo("MemAvailable")
    if available is not None:
        return available
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resident_memory() -> int:
    """Bytes this process holds in RAM now (VmRSS), 0 where unknown."""
    return _meminfo("VmRSS") or 0


def gpu_memory() -> int | None:
    """Total bytes of the first GPU TensorFlow sees, None without a GPU (or when unknown)."""
    if not tf.config.list_physical_devices("GPU"):
        return None
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return int(float(out.split()[0]) * 2**20)
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def default_memory_budget() -> int:
    """DEFAULT_MEMORY_SHARE of the GPU's memory when there is a GPU, else of the memory available now,
    plus what this process already holds (the budget covers the whole process)."""
    gpu = gpu_memory()
    if gpu is not None:
        return int(gpu * DEFAULT_MEMORY_SHARE)
    return int(available_memory() * DEFAULT_MEMORY_SHARE) + resident_memory()


def activation_values(shapes, image_shape) -> int:
    """Values per image of the layer outputs `shapes` (shapes without batch; None entries skipped),
    at least the image's (`image_shape`: height, width, channels)."""
    total = sum(int(np.prod(shape)) for shape in shapes if shape)
    return max(total, int(np.prod(image_shape)))


def bytes_per_image(shapes, image_shape, precision: str = "float32") -> int:
    """Estimated bytes one image needs through the layers of `shapes` and back, its layers computing in
    `precision` (measured on VGG16 at 224 px: the real cost is about 2/3 of this)."""
    return activation_values(shapes, image_shape) * BYTES_PER_ACTIVATION * VALUE_BYTES[precision] // 4


def plan_memory(shapes, image_shape, count: int, budget: int | None = None, precision: str = "float32") -> MemoryPlan:
    """The largest batch (see auto_batch) whose planned peak, with what the process holds already and
    the noise pass, fits `budget` bytes (default: default_memory_budget()), the layers computing in
    `precision`.

    Raises SpecError when not even one image fits.
    """
    from .errors import SpecError

    budget = budget if budget is not None else default_memory_budget()
    base = 0 if gpu_memory() is not None else resident_memory()
    # the noise pass (forward values only), and what TensorFlow's runtime adds while running (measured:
    # up to 0.45 GB over the plan in a process started from a long test session)
    fixed = SCALE_IMAGES * activation_values(shapes, image_shape) * 4 + RUNTIME_MARGIN
    per_image = bytes_per_image(shapes, image_shape, precision)
    room = budget - base - fixed
    if room < per_image:
        raise SpecError(f"one image of {image_shape[1]}x{image_shape[0]} px needs about "
                        f"{_gb(base + fixed + per_image)} but --memory-budget is {_gb(budget)}; "
                        "raise --memory-budget or lower --size")
    return MemoryPlan(budget, base, fixed, per_image, auto_batch(shapes, image_shape, count, room, precision))


def auto_batch(shapes, image_shape, count: int, budget: int | None = None, precision: str = "float32") -> int:
    """The largest batch (at least 1, at most `count` and MAX_AUTO_BATCH, or MAX_AUTO_BATCH_GPU on a
    GPU) whose images fit `budget` bytes at bytes_per_image each (default: plan_memory's choice)."""
    if budget is None:
        return plan_memory(shapes, image_shape, count, precision=precision).batch
    cap = MAX_AUTO_BATCH_GPU if gpu_memory() is not None else MAX_AUTO_BATCH
    return int(max(1, min(cap, count, budget // bytes_per_image(shapes, image_shape, precision))))


def choose_batch(shapes, image_shape, count: int, group: int, asked: int | None, earlier: int | None,
                 budget: int | None, precision: str = "float32") -> tuple[int, MemoryPlan | None]:
    """(batch, the MemoryPlan or None) for `count` filters of `group` pictures each (--diversity: a
    filter's pictures share a batch): `asked` (--batch), else `earlier` (an earlier run's, kept by
    --resume), else the memory plan's; the plan is made whenever --batch is not given (SpecError when
    not even one image fits the budget). The batch is a multiple of `group`, at most the pictures."""
    count = max(1, count) * group
    plan = None if asked is not None else plan_memory(shapes, image_shape, count, budget, precision)
    batch = asked or earlier or plan.batch
    return max(group, min(batch, count) // group * group), plan


def _gb(value: int) -> str:
    return f"{value / 2**30:.2f} GB"


