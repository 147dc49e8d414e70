"""Progress of a run: the cost model of a step, one bar and one time estimate for the whole run.

`step_cost` weighs one layer's steps against another's: `shard_pairs` deals a run's (layer, filter)
pairs into --shard parts of about equal cost, and a run is estimated before its rate is measured; `Bar` is the command line's progress (a tqdm bar on a terminal and
the estimate on stderr), `Calls` hands the steps to a function of render's caller. The flow
(run.execute) calls `begin(plans, kept)` once, then `start(layer)` per layer and `(done, more)` as
steps finish.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from . import models

# What one step of one image costs besides the multiply-adds of the layers up to the target, in multiply-adds
# that take as long: per weight of those layers, per pixel of the image (parameterization, transforms, Adam)
# and per step. Fitted on this project's CPU (2 cores): VGG16 hed, each of its 18 layers at 64 and 128 px,
# seconds per image-step against these four counts (the cut's last Conv2D counted for one filter when the
# target computes only the own one): within 14% rms, 38% at worst. Only their ratios matter: a run's rate is
# measured as it runs (Progress), these weigh one layer's steps against another's.
STEP_COST_PER_WEIGHT = 70.0
STEP_COST_PER_PIXEL = 15_000.0
STEP_COST_FIXED = 27e6


def step_cost(model, paths, shapes, cuts: dict, objectives, image_shape) -> float:
    """What one step of one image costs, in multiply-adds: those of a forward pass up to the layer
    (each layer of `paths` (with output `shapes`): its weights times its output's places; the layer
    itself for one filter when only each image's own filter is computed, see models.slices), plus
    STEP_COST_PER_WEIGHT per weight of those layers, STEP_COST_PER_PIXEL per pixel and STEP_COST_FIXED.
    A proxy for the time of a step, to balance shards and estimate a whole run."""
    layers = dict(models.walk(model))
    macs = weights = last = 0.0
    for path, shape in zip(paths, shapes):
        layer = layers.get(path)
        if layer is None or shape is None or models.graph.children(layer):
            continue
        size = float(np.prod([d or 1 for d in shape]))
        places = size / (shape[-1] or 1) if len(shape) > 1 else 1.0
        count = sum(float(np.prod(w.shape)) for w in layer.weights)
        macs, weights, last = macs + count * places, weights + count, count * places
    if not objectives:
        (cut,) = cuts.values()
        if (not cut.classes and models.slices(cut)
                and models.is_elementwise(cut.activation, (None, *cut.output_shape))):
            macs -= last * (1.0 - 1.0 / cut.filters)
    pixels = float(np.prod(image_shape[:2]))
    return macs + STEP_COST_PER_WEIGHT * weights + STEP_COST_PER_PIXEL * pixels + STEP_COST_FIXED


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


ESTIMATE_MIN_SECONDS = 60.0  # a layer estimated to take longer gets a line on stderr, terminal or not
ESTIMATE_TELL_SHARE = 0.1  # a run of several layers tells its estimate once the finished ones hold this share of
# its work (the rate is then measured on layers of several depths: the step-cost proxy is off by up to ~40% for
# one layer, within ~14% on average), or when its last layer begins
LAYER_OVERHEAD_STEPS = 60.0  # what a layer takes beyond its steps grows with what a step of it costs: about
# this many image-steps (its measuring passes, tracing a deeper graph) on top of a part every layer takes alike
# (VGG16 hed at 64 px, 4 filters a layer, no rescue: 3.0 s beyond the steps at block1_conv2, 3.3 s at
# block3_conv1, 5-6 s at block5_conv3)


class Progress:
    """One bar and one time estimate for a whole run. Called as `progress(done, more)` in
    output-size steps (the bar's unit); `start(layer)` says which layer the steps are of.

    The estimate weighs each layer's steps by what a step of it costs (step_cost): after a
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


def plan_text(plan) -> str:
    """`batch 8`, with the memory plan when the batch was chosen for the budget."""
    text = f"batch {plan.batch}"
    if plan.memory is not None:
        text += (f" (auto: memory budget {plan.memory.budget / 2**30:.2f} GB, "
                 f"planned peak {plan.memory.peak / 2**30:.2f} GB)")
    return text


class Calls:
    """render's progress: `function(done)` or `function(done, more)` as steps finish (see api.render)."""

    def __init__(self, function=None):
        self.function = function

    def begin(self, plans, kept: dict) -> None:
        pass

    def start(self, plan) -> None:
        pass

    def __call__(self, count: int, more: int = 0) -> None:
        if self.function and (count or more):
            self.function(count, more) if more else self.function(count)

    def end(self) -> None:
        pass


class Bar(Calls):
    """The command line's progress: one tqdm bar for the run (on a terminal, unless `quiet`), a line per
    layer, and the run's time estimate (see Progress)."""

    def __init__(self, quiet: bool = False):
        super().__init__()
        self.quiet, self.progress = quiet, None

    def begin(self, plans, kept: dict) -> None:
        """`kept`: {layer: the filters an earlier run finished (--resume)}."""
        from tqdm import tqdm

        share = {p.layer: len(set(kept.get(p.layer, ())) & set(p.part)) / max(len(p.part), 1) for p in plans}
        work = [(p.layer, len(p.part) * p.step_units() * p.spec.diversity, p.cost) for p in plans]
        done = sum(steps * share[name] for name, steps, _ in work)
        filters = sum(len(p.part) for p in plans)
        label = plans[0].layer if len(plans) == 1 else f"{len(plans)} layers"
        bar = tqdm(total=sum(steps for _, steps, _ in work), initial=done, desc=f"{label} ({filters} filters)",
                   unit="step", disable=self.quiet or not sys.stderr.isatty(), file=sys.stderr, dynamic_ncols=True)
        self.progress = Progress(bar, label, filters, [(name, steps * (1 - share[name]), cost)
                                                       for name, steps, cost in work],
                                 plan_text(plans[0]) if len(plans) == 1 else "batch per layer", self.quiet)

    def start(self, plan) -> None:
        bar = self.progress.bar
        if not bar.disable:
            bar.write(f"filtervis: {plan.layer}: {len(plan.part)} filters at {plan.image_shape[1]}x"
                      f"{plan.image_shape[0]} px, {plan_text(plan)}", file=sys.stderr)
        self.progress.start(plan.layer)

    def __call__(self, count: int, more: int = 0) -> None:
        self.progress(count, more)

    def end(self) -> None:
        if self.progress is not None:
            self.progress.bar.close()
