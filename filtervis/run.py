"""The flow of a run, owned by one function: `execute(spec, model, sink, progress, stop)`.

    spec ──> plan.make ──> frozen LayerPlans ──> for each batch: plan.schedule() ──> records ──> sink

`execute` checks what it can before the model is loaded (the sink's folder, the seed images), loads
the model, plans every layer (plan.py: layers, filters, --shard, starts, batch), opens the sink (which
refuses what --resume cannot keep before anything is written), then renders each layer batch by batch
and hands every finished batch to the sink. The sink decides where records go: `store.DiskSink` (the
command line: OUT/<layer>/ with its PNGs, palette and manifest, so a run stopped at any point keeps what
it finished and `--resume` goes on from there) or `result.MemorySink` (`filtervis.render`: Results in
memory). `run(spec)` is the command line's client; `layers(...)` lists a model's layers.
"""

from __future__ import annotations

import functools
from pathlib import Path

from . import models, plan as planning, progress as progressing, report, store
from .errors import Interrupted, SpecError
from .options import RunSpec


def layers(model: str, weights: str, preprocess: str | None = None, size=None, unsafe_model: bool = False,
           input_name: str | None = None, show_all: bool = False):
    """(the models.LoadedModel, rows of `models.LayerInfo` for the layers a forward pass reaches)."""
    loaded = models.load(model, weights, preprocess, size, unsafe=unsafe_model, input_name=input_name)
    return loaded, models.list_layers(loaded, show_all)


def run(spec: RunSpec, stop=None) -> list[store.LayerReport]:
    """Render every layer of `spec` into `spec.out` (and OUT/index.html unless --no-report); one
    store.LayerReport per layer. `stop` as for `execute`."""
    saved = functools.partial(report.write_report, Path(spec.out)) if spec.report else None
    sink = store.DiskSink(spec.out, spec.shard, spec.resume, saved)
    return execute(spec, spec.model, sink, progressing.Bar(spec.quiet), stop, global_seed=True)


def execute(spec: RunSpec, model, sink, progress=None, stop=None, objectives=None, global_seed: bool = False) -> list:
    """Render the layers of `spec` (or, with `objectives`, that list of objectives.Objective, one picture
    each) of `model` (a name or file as --model takes, a keras.Model, or a models.LoadedModel) into
    `sink`; returns what the sink gives for each layer, in the model's order.

    `progress`: a progress.Calls (progress.Bar for a terminal); `stop()` is asked between chunks of
    steps and batches: when it returns a signal number the run ends cleanly (the sink keeps the
    finished batches and closes the layer) and `errors.Interrupted` is raised. `global_seed`: set
    TensorFlow's global seed to --seed before rendering (the command line, a process of its own; render
    leaves the caller's random streams alone)."""
    if objectives is None and not spec.layers:
        raise SpecError("--layer is required: name at least one layer (`filtervis layers` lists them)")
    sink.check()
    loaded = planning.load(model, spec)
    plans = planning.make(spec, loaded, objectives, earlier=sink.earlier_batch)
    _check_stop(stop, " before anything was written")
    writers = sink.open(plans)

    if global_seed:
        import tensorflow as tf

        tf.random.set_seed(spec.seed)
    progress = progress or progressing.Calls()
    progress.begin(plans, {p.layer: w.entries for p, w in zip(plans, writers)})

    def tick(count: int, more: int = 0) -> None:
        progress(count, more)
        _check_stop(stop, "")

    done = []
    try:
        for plan, writer in zip(plans, writers):  # each layer: what the sink has not got yet, batch by batch
            progress.start(plan)
            try:
                for batch in plan.schedule().batches([f for f in plan.part if f not in writer.entries], tick):
                    writer.add(batch)
            except Interrupted as exc:
                sink.close(writer, plan, complete=False)
                finished = sum(1 for f in plan.part if f in writer.entries)
                raise Interrupted(f"interrupted by {signal_name(exc.signal_number)}: {finished} of {len(plan.part)} "
                                  f"filters of layer '{plan.layer}' are finished{sink.where(writer)}",
                                  exc.signal_number) from None
            done.append(sink.close(writer, plan, complete=True))
    finally:
        progress.end()
    return done


def _check_stop(stop, when: str) -> None:
    signal_number = stop() if stop else None
    if signal_number:
        raise Interrupted(f"interrupted by {signal_name(signal_number)}{when}", signal_number)


def signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
