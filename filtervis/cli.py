"""The command line: flags -> RunSpec -> library call -> exit code. No numerics here.

Exit codes: 0 done; 1 an internal error (a bug: one line, --verbose shows the traceback); 2 a bad
flag, config, model, layer, filter spec, seed image or output folder, runs `diff` cannot compare, or a
full disk (one line `filtervis: error: ...` naming the fix); 3 `stitch` found filters missing; 4
`--fail-on` found unconverged (or dead) filters, after everything was written; 130/143 stopped by
SIGINT/SIGTERM (finished work saved, the line says how to resume).

With `--json`, stdout carries one JSON document at the end and nothing else (anything the libraries
print goes where their log messages go); errors stay one line on stderr.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import sys
from contextlib import contextmanager

import click

from . import __version__, options
from .errors import ConfigError, FiltervisError, Interrupted, SpecError

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_FAIL_ON = 4  # --fail-on found what it gates on
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ParsedType(click.ParamType):
    """An option read by its table entry's `parse` (options.Option): `auto`, sizes, K/N; the library's
    SpecError becomes click's own message for the flag."""

    def __init__(self, name: str, parse, metavar: str | None):
        self.option_name, self.parse, self.name = name, parse, metavar or name

    def convert(self, value, param, ctx):
        if value is None or not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except SpecError as exc:
            message = str(exc)
            if message.startswith(options.flag(self.option_name) + " ") and ": " in message:
                message = message.partition(": ")[2]  # the flag and value are in click's own prefix
            self.fail(message, param, ctx)


class StopFlag:
    """Signal handlers for SIGINT and SIGTERM that only record the signal; the run asks the flag between
    steps chunks and stops cleanly. A second signal stops at once (KeyboardInterrupt)."""

    def __init__(self):
        self.signal_number = None
        self._saved = {}

    def __call__(self) -> int | None:
        return self.signal_number

    def _handle(self, number, frame):
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = number

    def __enter__(self):
        for number in STOP_SIGNALS:
            self._saved[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._saved.items():
            signal.signal(number, handler)
        return False


def _resume_command(ctx) -> str:
    """The command line that resumes this run: the same arguments plus --resume."""
    argv = list((ctx.find_root().obj or {}).get("argv", sys.argv[1:]))
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(["filtervis", *argv])


def _load_config(ctx, param, value):
    """Eager --config callback: TOML values, checked with each option's own type, become click defaults."""
    if not value:
        return value
    command = ctx.command
    params = {p.name: p for p in command.params if p.name not in ("config", "verbose")}
    values = options.load_config(value, set(params))
    for name, raw in values.items():
        option = params[name]
        try:
            if option.multiple and isinstance(raw, str):
                raw = [raw]
            values[name] = option.type_cast_value(ctx, raw)
        except click.BadParameter as exc:
            raise ConfigError(f"config file {value}: key '{name.replace('_', '-')}': {exc.message}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config file {value}: key '{name.replace('_', '-')}' has a bad value "
                              f"{raw!r} ({exc})") from None
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


def param_name(name: str) -> str:
    """The click parameter (and TOML key) of option `name`: its flag without dashes (`layers` -> `layer`)."""
    declared = options.OPTIONS[name].flag or options.flag(name)
    return declared.split("/")[0][2:].replace("-", "_")


def kwargs_default_shown(entry) -> bool:
    return entry.default is not None or entry.cli_default is not None


def table_option(name: str, **overrides):
    """The click option of the table's option `name` (see options.Option); `overrides` replace its help
    or default where a command shows it differently."""
    entry = options.OPTIONS[name]
    declared = entry.flag or options.flag(name)
    kwargs = dict(help=entry.help, default=entry.default if entry.cli_default is None else entry.cli_default,
                  show_default=entry.default_text is None and kwargs_default_shown(entry), metavar=entry.metavar)
    if entry.default_text:
        kwargs["help"] += f"  [default: {entry.default_text}]"
    if entry.multiple:
        kwargs.update(multiple=True, default=None, show_default=False)
    elif entry.parse is not None:
        kwargs["type"] = ParsedType(name, entry.parse, entry.metavar)
    elif entry.choices:
        kwargs.update(type=click.Choice(entry.choices), metavar=None)
    elif isinstance(entry.default, bool):
        kwargs.update(show_default="/" in declared, metavar=None)
        if "/" not in declared:
            kwargs["is_flag"] = True
    elif entry.default is not None:
        kwargs["type"] = type(entry.default)
    if name == "seed_image":
        kwargs["type"] = click.Path()
    kwargs.update(overrides)
    return click.option(declared, param_name(name), **kwargs)


def _options(names, function):
    for name in reversed(names):
        function = table_option(name)(function) if name in options.OPTIONS else name(function)
    return function


VERBOSE = click.option("--verbose", is_flag=True, help="Show TensorFlow's own log messages and full tracebacks.")
MODEL_OPTIONS = ("model", "weights", "preprocess", "input", "unsafe_model")
RUN_OPTIONS = tuple(name for name in options.OPTIONS if name not in (*MODEL_OPTIONS, "report"))


def _model_options(function):
    return _options([*MODEL_OPTIONS, VERBOSE], function)


def _ci_options(function):
    """--report/--no-report, --json and --fail-on, shared by `run` and `stitch`."""
    for option in reversed([
        table_option("report"),
        click.option("--json", "as_json", is_flag=True,
                     help="Print one JSON summary on stdout at the end (per layer: counts, paths, seconds), "
                          "and nothing else on stdout."),
        click.option("--fail-on", type=click.Choice(options.FAIL_ON), default=options.DEFAULT_FAIL_ON,
                     show_default=True,
                     help="Exit with code 4, after everything is written, when a filter is unconverged "
                          "(dead, unwinnable or failed) or dead."),
    ]):
        function = option(function)
    return function


@contextmanager
def _stdout_for_json(active: bool):
    """With --json: while the body runs, whatever is written to stdout (fd 1) goes where stderr's fd 2
    goes, so stdout holds the JSON document alone."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _finish_ci(views, index, as_json: bool, fail_on: str, incomplete: bool = False) -> None:
    """Print the --json document; then exit 3 when `incomplete`, else 4 when --fail-on trips."""
    from .report import failed_gate, summary

    if as_json:
        click.echo(json.dumps(summary(views, index, fail_on), indent=2))
    if incomplete:
        raise click.exceptions.Exit(EXIT_INCOMPLETE)
    if failed_gate(views, fail_on):
        if not as_json:
            click.echo(f"filtervis: --fail-on {fail_on}: failing with exit code {EXIT_FAIL_ON}", err=True)
        raise click.exceptions.Exit(EXIT_FAIL_ON)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="filtervis")
def cli():
    """filtervis: show what the filters of a convolutional network respond to."""


@cli.command()
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_load_config, help="TOML file of option values (presets in configs/); flags win.")
@_model_options
@functools.partial(_options, RUN_OPTIONS)
@_ci_options
def run(verbose, as_json, fail_on, **values):
    """Optimize an image per filter; write filter PNGs, a labeled palette and a manifest per layer, and
    OUT/index.html."""
    from .report import INDEX
    from .run import run as run_spec
    from .views import count_text, shown_text, written_views

    spec = options.RunSpec(**{name: values[param_name(name)] for name in options.OPTIONS})
    with StopFlag() as stop, _stdout_for_json(as_json):
        try:
            reports = run_spec(spec, stop=stop)
        except Interrupted as exc:
            raise Interrupted(f"{exc}; resume with: {_resume_command(click.get_current_context())}",
                              exc.signal_number) from None
    for report in reports:
        apart = "".join(f", {len(indices)} {name}" for name, indices in (("dead", report.dead),
                                                                         ("unwinnable", report.unwinnable)) if indices)
        line = f"{report.layer}: {report.converged}/{report.filters} filters converged{apart} -> {report.folder}"
        if not as_json:
            click.echo(line)
        slow = [f for f in report.failed if f not in report.faulty]
        if slow:
            click.echo(f"filtervis: warning: {report.layer}: {count_text(slow)} did not converge "
                       f"({shown_text(slow)}); try more --steps or another --param", err=True)
        if report.faulty:
            click.echo(f"filtervis: warning: {report.layer}: {count_text(report.faulty)} hit NaN/Inf even after a "
                       f"restart with a smaller step ({shown_text(report.faulty)}); they have no PNG", err=True)
    index = os.path.join(spec.out, INDEX) if spec.report else None
    _finish_ci(written_views([r.folder for r in reports], spec.shard), index, as_json, fail_on)


@cli.command()
@click.argument("out", type=click.Path())
@click.option("--from", "sources", multiple=True, type=click.Path(), metavar="DIR",
              help="Another run's --out folder (repeatable), e.g. one per machine; its PNGs are copied into OUT.")
@click.option("--cols", type=int, default=None, help="Palette columns.  [default: the runs' --cols]")
@_ci_options
def stitch(out, sources, cols, report, as_json, fail_on):
    """Merge the parts of a sharded run (--shard K/N) in OUT (and --from folders) into one palette and
    manifest per layer, and OUT/index.html; report filters no part has finished (exit code 3)."""
    from .report import INDEX
    from .stitch import stitch as stitch_runs
    from .views import shown_text, written_views

    if cols is not None:
        options.RunSpec(cols=cols)  # the same check as `run`
    incomplete = False
    with _stdout_for_json(as_json):
        merged = stitch_runs(out, tuple(sources), cols, report=report)
    for layer in merged:
        if not as_json:
            click.echo(f"{layer.layer}: {layer.done}/{layer.planned} filters -> {layer.folder}")
        if layer.missing:
            incomplete = True
            parts = f" (no manifest from part {', '.join(layer.missing_shards)})" if layer.missing_shards else ""
            click.echo(f"filtervis: warning: {layer.layer}: {len(layer.missing)} filters missing "
                       f"({shown_text(layer.missing)}){parts}; run those parts (with --resume) and stitch again",
                       err=True)
    index = os.path.join(out, INDEX) if report else None
    _finish_ci(written_views([layer.folder for layer in merged]), index, as_json, fail_on, incomplete)


@cli.command()
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
@click.option("--metric", type=click.Choice(options.METRICS), default=options.DEFAULT_METRIC, show_default=True,
              help="pixel: root mean square pixel difference; perceptual: distance of the features of NEW's "
                   "model's early layers (the model must load again from NEW's manifest).")
@click.option("--json", "as_json", is_flag=True, help="Print the ranking as one JSON document on stdout.")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's own log messages and full tracebacks.")
def diff(old, new, metric, as_json, verbose):
    """Compare two runs of the same layers and filters (two checkpoints, say): per filter, how far its
    image moved and how its activation changed. Writes NEW/diff.html, most changed filters first."""
    from .diff import compare, summary, write_diff

    with _stdout_for_json(as_json):
        diffs = compare(old, new, metric)
        page = write_diff(old, new, diffs, metric)
    if as_json:
        click.echo(json.dumps(summary(old, new, diffs, metric, page), indent=2))
        return
    for layer in diffs:
        top = [c for c in layer.changes if c.distance is not None][:3]
        most = ", ".join(f"{c.index} ({c.distance:.3g})" for c in top) or "none with images in both runs"
        click.echo(f"{layer.layer}: {len(layer.changes)} filters, most changed: {most}")
    click.echo(f"-> {page}")


@cli.command()
@_model_options
@table_option("size", help="Input size the shapes are shown for: 96 or 128x96 (width x height).  [default: the model's]")
@click.option("--all", "show_all", is_flag=True, help="Also list layers that cannot be visualized.")
def layers(verbose, model, weights, preprocess, input, unsafe_model, size, show_all):
    """List the layers a forward pass reaches that can be visualized: path, type, output shape, number of
    filters, and whether they are rendered by channels (maps) or by units ((batch, units) outputs)."""
    from .models import CHANNEL_NAMES
    from .models.precision import resolve as resolve_precision
    from .run import layers as list_layers

    options.RunSpec(preprocess=preprocess)  # the same check as `run`
    loaded, rows = list_layers(model, weights, preprocess, size, unsafe_model, input, show_all)
    rows = [r for r in rows if show_all or r.filters]
    height, width_px, channels = loaded.input_shape
    where = f" '{loaded.input_name}'" if loaded.input_name else ""
    click.echo(f"model {loaded.name}: input{where} (None, {height}, {width_px}, {channels}): {channels} "
               f"channel{'s' if channels > 1 else ''} ({CHANNEL_NAMES[channels]})")
    used, why = resolve_precision(loaded.model, "auto")
    click.echo(f"--precision auto computes in {used} here: {why}")
    width = max([len(r.path) for r in rows] + [5])
    click.echo(f"{'layer':<{width}}  {'type':<22} {'output shape':<26} {'filters':>7}  by")
    for r in rows:
        shape = "(" + ", ".join("None" if d is None else str(d) for d in r.shape) + ")"
        click.echo(f"{r.path:<{width}}  {r.type:<22} {shape:<26} {r.filters if r.filters else '-':>7}  {r.kind or '-'}")


def _silence_native_logs() -> None:
    """Keep TensorFlow's C++ start-up chatter (written straight to fd 2) off the terminal.

    fd 2 goes to /dev/null; Python's sys.stderr keeps writing to the real stderr.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("tensorflow", "absl", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(saved, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                               errors="backslashreplace")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI and turns every failure into one line and an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    if not verbose:
        _silence_native_logs()
    try:
        result = cli.main(args=argv, prog_name="filtervis", standalone_mode=False, obj={"argv": argv})
        code = result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.Abort:
        click.echo("filtervis: interrupted", err=True)
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        hint = "; see `filtervis --help`" if isinstance(exc, click.UsageError) else ""
        click.echo(f"filtervis: error: {' '.join(exc.format_message().split())}{hint}", err=True)
        code = EXIT_USAGE
    except FiltervisError as exc:
        kind = "" if isinstance(exc, Interrupted) else "error: "
        click.echo(f"filtervis: {kind}{' '.join(str(exc).split())}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("filtervis: interrupted", err=True)
        code = EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say so in one line, traceback with --verbose
        if verbose:
            raise
        click.echo(f"filtervis: internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                   "(rerun with --verbose for the traceback)", err=True)
        code = EXIT_INTERNAL
    sys.stderr.flush()
    return code


def entry() -> None:
    sys.exit(main())
