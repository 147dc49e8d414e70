"""The type a model's layers compute in (`--precision`): what `auto` picks on this machine, what a model
already computes in, and a model rebuilt to compute in another type.

`auto` picks bfloat16 on a CPU with native bfloat16 arithmetic (AVX512_BF16 or AMX-BF16 in
/proc/cpuinfo's flags) and on a GPU of compute capability 8.0 or more, float16 on an older GPU, and
float32 elsewhere; a model that already computes in a lower type (a mixed policy, saved or set by its
author) keeps its own under `auto`.

A model is rebuilt (`convert`) as a clone whose layers compute in the type: layers with weights store
them rounded to that type once (a mixed policy rounds them the same way at every call, so the numbers
are those of Keras's mixed policy, without a cast of every weight per pass), except normalization
layers, which keep float32 weights and compute in float32 (mixed policy: Keras upcasts their input).
The image, the optimizer, the objective's reduction and every measure stay float32: the model's input
is cast down by its first layer and its output cast back up (cut.Cut.forward). A model that cannot
be cloned (subclassed, or a layer whose config does not rebuild it) computes in float32, and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import weakref

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
LOW = ("bfloat16", "float16")
CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bfloat16 arithmetic
GPU_BF16_CAPABILITY = (8, 0)  # Ampere and later compute bfloat16 natively
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# layers whose weights stay float32 and whose numbers Keras computes in float32 under a mixed policy
NORMALIZATION = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
                 "RMSNormalization", "Normalization")


def cpu_flags() -> set[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def auto_precision() -> tuple[str, str]:
    """(precision, why) that `auto` picks on this machine (see the module doc)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        try:
            capability = tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or ())
        except (ValueError, RuntimeError):
            capability = ()
        if capability and capability >= GPU_BF16_CAPABILITY:
            return "bfloat16", f"GPU of compute capability {capability[0]}.{capability[1]} (native bfloat16)"
        shown = f" {capability[0]}.{capability[1]}" if capability else ""
        return "float16", f"GPU of compute capability{shown or ' unknown'} (no native bfloat16)"
    native = sorted(set(CPU_FLAGS) & cpu_flags())
    if native:
        return "bfloat16", f"CPU with native bfloat16 ({', '.join(native)})"
    return "float32", "CPU without native bfloat16 (no avx512_bf16 or amx_bf16)"


def own_precision(model) -> str | None:
    """The lower type a model's layers already compute in (a mixed or low policy), None for float32."""
    from .graph import walk

    for _, layer in walk(model):
        dtype = getattr(layer, "compute_dtype", None)
        if dtype in LOW:
            return dtype
    return None


@dataclasses.dataclass(frozen=True)
class Precision:
    """What a run computes in: `asked` (the option), `used` (the type the model's layers compute in)
    and `note` (why, when `used` is not what was asked or `auto` decided)."""

    asked: str
    used: str
    note: str

    def manifest(self) -> dict:
        return {"asked": self.asked, "used": self.used, "note": self.note}


def _policy(layer, dtype: str):
    import keras

    if type(layer).__name__ in NORMALIZATION or dtype == "float32":
        return keras.DTypePolicy("float32" if dtype == "float32" else f"mixed_{dtype}")
    return keras.DTypePolicy(dtype)


@contextlib.contextmanager
def _random_streams_kept():
    """Python's, NumPy's and TensorFlow's global random streams as they were before the block."""
    import random

    import numpy as np
    import tensorflow as tf

    python, numpy_state = random.getstate(), np.random.get_state()
    generator = tf.random.get_global_generator()
    state = generator.state.numpy().copy()
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy_state)
        generator.state.assign(state)


def convert_model(model, dtype: str):
    """A clone of the functional or Sequential `model` whose layers compute in `dtype` (see the module
    doc), its weights copied; raises ValueError (or another Exception) when it cannot be cloned."""
    import keras

    def rebuild(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        config = dict(layer.get_config(), dtype=_policy(layer, dtype))
        return layer.__class__.from_config(config)

    with _random_streams_kept():  # the clone's initializers draw from Python's and NumPy's global streams
        clone = keras.models.clone_model(model, clone_function=rebuild, recursive=True)
    old, new = model.weights, clone.weights
    if len(old) != len(new) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(old, new)):
        raise ValueError("the clone's weights do not match the model's")
    for source, target in zip(old, new):
        target.assign(keras.ops.cast(source.value, target.dtype))
    return clone


def resolve(model, asked: str) -> tuple[str, str]:
    """(the type to compute in, why) for option value `asked` on `model`."""
    own = own_precision(model)
    if asked == "auto":
        if own is not None:
            return own, f"the model's own policy ({own})"
        return auto_precision()
    return asked, "asked"


_CLONES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {type: its clone} (one per run)


def apply(loaded, asked: str):
    """(LoadedModel computing in the resolved type, Precision). A model is cloned only when it must
    change type; one that cannot be cloned keeps float32 (or its own type) and the note says why."""
    used, why = resolve(loaded.model, asked)
    own = own_precision(loaded.model) or "float32"
    if used == own:
        return loaded, Precision(asked, used, why)
    try:
        clones = _CLONES.setdefault(loaded.model, {})
        if used not in clones:
            clones[used] = convert_model(loaded.model, used)
        model = clones[used]
    except Exception as exc:  # noqa: BLE001 - a model we cannot rebuild runs as it is
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return loaded, Precision(asked, own, f"{used} wanted ({why}), but the model cannot be cloned "
                                             f"({type(exc).__name__}: {reason}); computed in {own}")
    return dataclasses.replace(loaded, model=model), Precision(asked, used, why)
