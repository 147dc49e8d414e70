"""The library entry points: `run(spec)` renders every requested layer, `layers(...)` lists them.

Everything a run could fail on (model, weights, layers, filters, seed images, output folder) is
checked before the first file is written. Then each layer is rendered batch by batch; after every
batch its PNGs are on disk and the manifest lists exactly them, so a run stopped at any point (a
signal, a full disk) keeps what it finished and `--resume` goes on from there.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path


from . import api, models, records, report, store
from .errors import Interrupted, SpecError
from .options import RunSpec
from .store import STATUS_DEAD, STATUS_DONE, STATUS_FAILED, STATUS_UNWINNABLE, WITH_PNG


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """What one layer's rendering gave."""

    layer: str
    folder: Path
    filters: int
    converged: int
    failed: tuple[int, ...]  # did not converge (includes `faulty`, not `dead` nor `unwinnable`)
    faulty: tuple[int, ...] = ()  # NaN/Inf even after a restart with a smaller step: no PNG
    dead: tuple[int, ...] = ()  # channels nothing fired (see rescue.py): not counted as failures
    unwinnable: tuple[int, ...] = ()  # classes no picture was put in (see rescue.py): not counted as failures


@dataclasses.dataclass(frozen=True)
class Plan:
    """One layer's work, fully checked: the api.Job, this run's part of its filters, the folder."""

    job: api.Job
    filters: list[int]  # this run's part (all of `job.filters` unless --shard)
    folder: Path

    @property
    def layer(self) -> str:
        return self.job.layer


def layers(model: str, weights: str, preprocess: str | None = None, size=None, unsafe_model: bool = False,
           input_name: str | None = None, show_all: bool = False):
    """(the models.LoadedModel, rows of `models.LayerInfo` for the layers a forward pass reaches)."""
    loaded = models.load(model, weights, preprocess, size, unsafe=unsafe_model, input_name=input_name)
    return loaded, models.list_layers(loaded, show_all)


def plan(spec: RunSpec, loaded: models.LoadedModel) -> list[Plan]:
    """Check every layer, filter index and seed image of the run, choose this run's part of the
    (layer, filter) pairs (--shard) and each layer's batch; nothing is written. The layers are those
    `--layer` names, patterns and `all` select (models.select_layers), in the model's order."""
    shapes = models.layer_shapes(loaded)
    jobs, folders = [], {}
    for layer, explicit in models.select_layers(loaded, dict.fromkeys(spec.layers), shapes):
        job = api.prepare(loaded, layer, spec=dataclasses.replace(spec, seed_image=None), clip=not explicit,
                          shapes=shapes)
        folder = Path(spec.out) / store.layer_dirname(layer)
        if folder in folders:
            raise SpecError(f"layers '{folders[folder]}' and '{layer}' would share the folder {folder}; "
                            "visualize them in separate runs with different --out")
        folders[folder] = layer
        jobs.append((job, folder))
    parts = shard_pairs([(job.layer, job.filters, job.step_units() * job.step_cost()) for job, _ in jobs], spec.shard)
    plans = []
    for job, folder in jobs:
        filters = parts[job.layer]
        if spec.seed_image and filters:
            job.starts = api.seed_images(spec.seed_image, filters, job.image_shape)
        # Images do not depend on the batch (see exact.py), except, rarely, with TV and Lp both on; so
        # --resume keeps the batch the earlier run chose unless --batch is given.
        earlier = _earlier_batch(folder / store.manifest_name(spec.shard)) if spec.resume else None
        job.choose_batch(len(filters), earlier)  # SpecError when not one image fits the memory budget
        plans.append(Plan(job, filters, folder))
    return plans


def shard_pairs(layers: list[tuple[str, list[int], float]], shard: tuple[int, int] | None) -> dict[str, list[int]]:
    """{layer: its filters in this run's part}: `layers` are (name, filters, cost of one filter) in order;
    --shard K/N gives the K-th of N parts of all the (layer, filter) pairs, of about equal cost: the pairs,
    costliest first (then in order), each go to the part with the least cost so far (the first of equals).
    Pairs of equal cost are dealt round robin, so one layer's filters go to the parts as every N-th
    filter from the K-th. The parts depend only on `layers`."""
    if shard is None:
        return {name: list(filters) for name, filters, _ in layers}
    k, n = shard
    pairs = sorted(((cost, i, j, name, f) for i, (name, filters, cost) in enumerate(layers)
                    for j, f in enumerate(filters)), key=lambda pair: (-pair[0], pair[1], pair[2]))
    loads, mine = [0.0] * n, {name: [] for name, _, _ in layers}
    for cost, _, _, name, f in pairs:
        part = loads.index(min(loads))
        loads[part] += cost
        if part == k - 1:
            mine[name].append(f)
    order = {name: {f: j for j, f in enumerate(filters)} for name, filters, _ in layers}
    return {name: sorted(chosen, key=order[name].get) for name, chosen in mine.items()}


def run(spec: RunSpec, stop=None) -> list[LayerReport]:
    """Render every layer of `spec` into `spec.out`; returns one report per layer.

    `stop()` is asked between steps chunks and batches; when it returns a signal number the run ends
    cleanly: the finished PNGs, the manifest and a palette of them stay, and `errors.Interrupted` is raised.
    """
    if not spec.layers:
        raise SpecError("--layer is required: name at least one layer (`filtervis layers` lists them)")
    store.check_writable(spec.out)
    if spec.seed_image:
        api.check_seed_source(spec.seed_image)
    loaded = api.load(spec.model, spec)
    plans = plan(spec, loaded)
    _check_stop(stop, "before anything was written")

    import tensorflow as tf
    from tqdm import tqdm

    tf.random.set_seed(spec.seed)
    manifests = {p.layer: p.job.manifest(p.job.filters, p.filters) for p in plans}  # each made once (a model file's digest)
    resumed = {p.layer: _resumable(p, manifests[p.layer], spec) if spec.resume else {} for p in plans}
    share = {p.layer: len(set(resumed[p.layer]) & set(p.filters)) / max(len(p.filters), 1) for p in plans}  # done
    work = [(p.layer, len(p.filters) * p.job.step_units() * spec.diversity, p.job.step_cost()) for p in plans]
    done = sum(steps * share[name] for name, steps, _ in work)
    filters = sum(len(p.filters) for p in plans)
    label = plans[0].layer if len(plans) == 1 else f"{len(plans)} layers"
    bar = tqdm(total=sum(steps for _, steps, _ in work), initial=done, desc=f"{label} ({filters} filters)",
               unit="step", disable=spec.quiet or not sys.stderr.isatty(), file=sys.stderr, dynamic_ncols=True)
    progress = Progress(bar, label, filters, [(name, steps * (1 - share[name]), cost) for name, steps, cost in work],
                        _plan_text(plans[0].job) if len(plans) == 1 else "batch per layer", spec.quiet)
    with bar:
        return [_render_layer(spec, p, manifests[p.layer], resumed[p.layer], progress, stop) for p in plans]


ESTIMATE_MIN_SECONDS = 60.0  # a layer estimated to take longer gets a line on stderr, terminal or not
ESTIMATE_TELL_SHARE = 0.1  # a run of several layers tells its estimate once the finished ones hold this share of
# its work (the rate is then measured on layers of several depths: the step-cost proxy is off by up to ~40% for
# one layer, within ~14% on average), or when its last layer begins
LAYER_OVERHEAD_STEPS = 60.0  # what a layer takes beyond its steps grows with what a step of it costs: about
# this many image-steps (its measuring passes, tracing a deeper graph) on top of a part every layer takes alike
# (VGG16 hed at 64 px, 4 filters a layer, no rescue: 3.0 s beyond the steps at block1_conv2, 3.3 s at
# block3_conv1, 5-6 s at block5_conv3)


class Progress:
    """One bar and one time estimate for a whole run. Called as api.Job.run's `progress(done, more)` in
    output-size steps (the bar's unit); `start(layer)` says which layer the steps are of.

    The estimate weighs each layer's steps by what a step of it costs (api.Job.step_cost): after a
    layer's first chunk (which traces the step), chunks are timed, giving the seconds per cost. A layer
    not finished yet is counted at that rate, its steps grown by the share the rescue added to the
    finished layers' plans, plus what a layer takes beyond its steps (tracing, measuring, writing its
    files): LAYER_OVERHEAD_STEPS of its image-steps and the mean of what the finished layers took beyond
    theirs and that (before one is finished: what the current one took so far). The estimate is in the
    bar's description, and on stderr once (with the plan) when it is long: for one layer after its
    first clean chunk, for several once the finished layers hold ESTIMATE_TELL_SHARE of the run's work,
    or its last layer began."""

    def __init__(self, bar, label: str, filters: int, layers: list[tuple[str, float, float]], plan_text: str,
                 quiet: bool):
        """`layers`: (name, steps left, cost of one step) of each layer, in the order they run."""
        self.bar, self.label, self.filters, self.plan_text, self.quiet = bar, label, filters, plan_text, quiet
        self.cost = {name: cost for name, _, cost in layers}
        self.left = {name: steps * cost for name, steps, cost in layers}  # cost of the steps left, per layer
        self.pending = [name for name, steps, _ in layers if steps > 0]  # layers not finished (the current one too)
        self.work = sum(self.left.values())  # the run's planned cost
        self.finished = 0.0  # what the finished layers' steps cost
        self.planned_steps = self.finished_steps = 0.0  # the finished layers' planned steps, and the steps they took
        self.layer, self.first, self.told = None, True, False
        self.timed_cost = self.timed_seconds = 0.0
        self.overheads: list[float] = []  # per finished layer: seconds beyond its steps and LAYER_OVERHEAD_STEPS
        self.began = self.spent = self.steps = self.plan = 0.0  # the current layer: began, cost and steps so far, plan
        self.last = time.perf_counter()

    def start(self, layer: str) -> None:
        now = time.perf_counter()
        if self.layer is not None:  # a layer done: its overhead is known, and the estimate has it
            self._finish(now)
            if self.timed_cost:
                share = self.finished >= ESTIMATE_TELL_SHARE * self.work
                self._estimate(tell=share or self.pending == [layer])
        self.layer, self.first, self.last, self.began, self.spent, self.steps = layer, True, now, now, 0.0, 0.0
        self.plan = self.left.get(layer, 0.0) / self.cost[layer] if layer in self.cost else 0.0

    def _finish(self, now: float) -> None:
        if self.timed_cost:
            self.overheads.append(self._overhead(now) - self._layer_part(self.layer))
        self.finished += self.spent
        self.planned_steps += self.plan
        self.finished_steps += self.steps
        if self.layer in self.pending:
            self.pending.remove(self.layer)

    def _rate(self) -> float:
        return self.timed_seconds / self.timed_cost

    def _layer_part(self, layer: str) -> float:
        """Seconds of a layer's time beyond its steps that grow with what its step costs."""
        return LAYER_OVERHEAD_STEPS * self.cost[layer] * self._rate()

    def _overhead(self, now: float) -> float:
        """What the current layer took so far beyond its steps at the measured rate."""
        return max(now - self.began - self.spent * self._rate(), 0.0)

    def __call__(self, count: int, more: int = 0) -> None:
        if self.layer is None:
            self.start(next(iter(self.cost)))
        cost = self.cost[self.layer]
        if more:
            self.bar.total += more
            self.left[self.layer] += more * cost
        if not count:
            return
        now = time.perf_counter()
        seconds, spent = now - self.last, count * cost
        self.left[self.layer] = max(self.left[self.layer] - spent, 0.0)
        self.spent += spent
        self.steps += count
        if self.first:  # tracing: not timed (its excess is the layer's overhead)
            self.first = False
        else:
            self.timed_cost += spent
            self.timed_seconds += seconds
            self._estimate(tell=len(self.cost) == 1, now=now)
        self.last = now
        self.bar.update(count)

    def _estimate(self, tell: bool, now: float | None = None) -> None:
        """Show the estimate; `tell`: also on stderr, once (see the class doc)."""
        now = time.perf_counter() if now is None else now
        rate = self._rate()
        current = self.layer in self.pending
        so_far = self._overhead(now) if current else 0.0
        common = (sum(self.overheads) / len(self.overheads) if self.overheads
                  else max(so_far - self._layer_part(self.layer), 0.0))
        grown = max(self.finished_steps / self.planned_steps, 1.0) if self.planned_steps else 1.0  # the rescue's
        left = (self.left[self.layer] if current else 0.0) * rate
        left += max(common + self._layer_part(self.layer) - so_far, 0.0) if current else 0.0
        for name in self.pending:
            if name != self.layer:
                left += self.left[name] * grown * rate + max(common + self._layer_part(name), 0.0)
        text = duration_text(left)
        self.bar.set_description(f"{self.label} ({self.filters} filters, {text})")
        if tell and not self.told:
            if left >= ESTIMATE_MIN_SECONDS and not self.quiet:
                self.bar.write(f"filtervis: {self.label}: {self.filters} filters, {self.plan_text}: {text} left",
                               file=sys.stderr)
            self.told = True


def duration_text(seconds: float) -> str:
    """`~45 s`, `~3 min 20 s` (under 10 minutes), `~42 min`."""
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 600:
        return f"~{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"~{seconds / 60:.0f} min"


def _check_stop(stop, when: str) -> None:
    signal_number = stop() if stop else None
    if signal_number:
        raise Interrupted(f"interrupted by {api.signal_name(signal_number)} {when}", signal_number)


def _plan_text(job: api.Job) -> str:
    text = f"batch {job.batch}"
    if job.memory is not None:
        text += (f" (auto: memory budget {job.memory.budget / 2**30:.2f} GB, "
                 f"planned peak {job.memory.peak / 2**30:.2f} GB)")
    return text


def _render_layer(spec: RunSpec, plan_: Plan, manifest: dict, entries: dict, progress: Progress, stop) -> LayerReport:
    """Render one layer's part into its folder with its `manifest` (api.Job.manifest): keep `entries` (what
    an earlier run finished, see _resumable), write each batch as it finishes (see _save_batch), then the
    palette and the final manifest (also when stopped)."""
    job, name = plan_.job, store.manifest_name(spec.shard)
    todo = [f for f in plan_.filters if f not in entries]
    if not progress.bar.disable:
        progress.bar.write(f"filtervis: {plan_.layer}: {len(plan_.filters)} filters at "
                           f"{job.image_shape[1]}x{job.image_shape[0]} px, {_plan_text(job)}", file=sys.stderr)
    progress.start(plan_.layer)
    try:
        result = job.run(todo, progress=progress, stop=stop,
                         on_batch=lambda _, batch: _save_batch(spec, plan_.folder, batch, entries, manifest, name))
    except Interrupted as exc:
        _finish(spec, plan_, entries, manifest, name)
        done = sum(1 for f in plan_.filters if f in entries)
        raise Interrupted(f"interrupted by {api.signal_name(exc.signal_number)}: {done} of "
                          f"{len(plan_.filters)} filters of layer '{plan_.layer}' are finished and saved in "
                          f"{plan_.folder}", exc.signal_number) from None
    _finish(spec, plan_, entries, manifest, name)
    store.write_palette_gif(plan_.folder, plan_.layer, records.movies(result.filters), spec.cols)
    mine = [entries[f] for f in plan_.filters]
    apart = (STATUS_DEAD, STATUS_UNWINNABLE)  # counted apart, not as failures
    dead, unwinnable = (tuple(e["index"] for e in mine if e["status"] == s) for s in apart)
    failed = tuple(e["index"] for e in mine if not e["converged"] and e["status"] not in apart)
    faulty = tuple(e["index"] for e in mine if e["status"] == STATUS_FAILED)
    converged = len(mine) - len(failed) - len(dead) - len(unwinnable)
    return LayerReport(plan_.layer, plan_.folder, len(mine), converged, failed, faulty, dead, unwinnable)


def _save_batch(spec: RunSpec, folder: Path, batch, entries: dict, manifest: dict, name: str) -> None:
    """Write the PNGs of one batch, then the manifest listing them; on a write error remove this
    batch's PNGs again, so the folder holds exactly what the manifest on disk lists."""
    written = []
    try:
        for rec in batch:
            written += store.write_pictures(folder, records.pictures([rec]))
            entries[rec.index] = rec.entry()
        manifest["filters"] = [entries[f] for f in sorted(entries)]
    except BaseException:
        _undo(written, batch, entries)
        raise
    try:
        _save_manifest(spec, folder, manifest, name)
    except BaseException:
        if not (folder / name).is_file() or store.read_manifest(folder / name)["filters"] != manifest["filters"]:
            _undo(written, batch, entries)
        raise


def _save_manifest(spec: RunSpec, folder: Path, manifest: dict, name: str) -> None:
    """The manifest, then OUT/index.html rebuilt from every manifest in OUT (unless --no-report)."""
    store.write_manifest(folder, manifest, name)
    if spec.report:
        report.write_report(Path(folder).parent)


def _undo(written: list[Path], batch, entries: dict) -> None:
    """Forget a batch whose manifest could not be written: its PNGs go, so disk and manifest agree."""
    for path in written:
        path.unlink(missing_ok=True)
    for rec in batch:
        entries.pop(rec.index, None)


def _finish(spec, plan_, entries: dict, manifest: dict, name: str) -> None:
    """Write the palette of the finished filters of this run's part, then the final manifest."""
    done = [entries[f] for f in plan_.filters if f in entries]
    title = plan_.layer if spec.shard is None else f"{plan_.layer} (part {spec.shard[0]}/{spec.shard[1]})"
    manifest["palette"] = store.write_palette(plan_.folder, store.palette_name(spec.shard), done, title,
                                              manifest["params"])
    manifest["complete"] = all(f in entries for f in plan_.filters)
    manifest["filters"] = [entries[f] for f in sorted(entries)]
    _save_manifest(spec, plan_.folder, manifest, name)


def _earlier_batch(path: Path) -> int | None:
    """The batch size recorded in an earlier run's manifest, if there is one."""
    if not path.is_file():
        return None
    batch = store.read_manifest(path)["params"].get("batch")
    return batch if isinstance(batch, int) and batch >= 1 else None


def _resumable(plan_, manifest: dict, spec: RunSpec) -> dict:
    """Entries of an earlier run in the same folder that this run (its `manifest`) can keep ({index: entry}).

    SpecError when that run's parameters differ from this one's (see store.compare_params).
    """
    path = plan_.folder / store.manifest_name(spec.shard)
    if not path.is_file():
        return {}
    old = store.read_manifest(path)
    difference = store.compare_params(old, manifest)
    if difference:
        key, before, now = difference
        raise SpecError(f"--resume: {path} was made with {key}={before!r} (this run: {now!r}); rerun with the "
                        "same parameters, or drop --resume (or choose another --out) to start afresh")
    kept = {}
    for entry in old["filters"]:
        index, status = entry.get("index"), entry.get("status", STATUS_DONE)
        if status == STATUS_FAILED or (status in WITH_PNG and (plan_.folder / str(entry.get("file"))).is_file()):
            kept[int(index)] = dict(entry, status=status)
    return kept
