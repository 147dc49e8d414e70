"""OUT/index.html: one static page of a run, built from the manifests on disk; and the run's summary.

The page is rebuilt from every manifest in OUT (`OUT/*/manifest*.json`, or OUT's own when OUT is a
layer folder), so it is right whatever wrote them: a run, an interrupted run, the parts of a sharded
run, `filtervis stitch`. It holds its CSS and script inline and refers to the PNGs by relative paths,
so the folder can be zipped or uploaded as it is. A layer folder's manifests are merged (manifest.json
first, then the shards by K); a manifest of another command (see `store.compare_params`) is left out
and named in the layer's warnings.

Each filter gets one of five statuses (disjoint, they add up to the filters listed):
converged (on the first try), rescued (converged in the rescue), dead (a channel nothing fired),
unwinnable (a class no picture was put in) and failed (did not converge, or NaN/Inf: no PNG). Dead,
unwinnable and failed filters are the *unconverged* ones.
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from . import __version__, files
from .options import FAIL_ON
from .records import STATUS_DEAD, STATUSES, UNCONVERGED, filter_status
from .views import LayerView, read_views

INDEX = "index.html"


def failed_gate(views: list[LayerView], fail_on: str) -> bool:
    """True when `--fail-on fail_on` should make the exit code 4: `unconverged` when any filter is dead,
    unwinnable or failed, `dead` when any is dead, `never` never."""
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {FAIL_ON}, but was {fail_on!r}")
    if fail_on == "never":
        return False
    kinds = UNCONVERGED if fail_on == "unconverged" else (STATUS_DEAD,)
    return any(view.counts[kind] for view in views for kind in kinds)


def layer_summary(view: LayerView) -> dict:
    """One layer of the --json document."""
    palette = view.palettes[0] if view.palettes else None
    return {"layer": view.layer, "folder": str(view.folder), "manifest": str(view.manifests[0]),
            "palette": str(view.folder / palette) if palette else None,
            "filters": len(view.entries), **view.counts, "unconverged": list(view.unconverged),
            "missing": list(view.missing), "seconds": view.seconds}


def summary(views: list[LayerView], index: Path | None, fail_on: str = "never") -> dict:
    """The --json document of a run or a stitch: per layer the counts, paths and seconds."""
    return {"filtervis": __version__, "index": str(index) if index else None, "fail_on": fail_on,
            "failed_gate": failed_gate(views, fail_on), "layers": [layer_summary(v) for v in views]}


def write_report(out: str | Path) -> Path:
    """Rebuild OUT/index.html from the manifests in OUT, atomically; returns its path.

    Runs that write into one OUT at once (shards) take turns: each reads the manifests and writes the
    page while holding a lock on the OUT folder, so the last page written has the last manifests."""
    out = Path(out)
    with _locked(out):
        page = render_index(read_views(out), out)
        files.atomic_write(out / INDEX, page.encode())
    return out / INDEX


@contextmanager
def _locked(folder: Path):
    """An exclusive flock on the folder itself (no lock file is left); without one where the file system
    cannot lock a folder."""
    try:
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(handle)  # releases the lock


# --- the page ---------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#1d2125;background:#fafafa}
h1{font-size:1.5em;margin:.8em 0 .2em}h2{font-size:1.2em;margin:0 0 .3em}
.meta{color:#555;margin:.2em 0}
.bar{position:sticky;top:0;background:#fafafa;padding:.6em 0;border-bottom:1px solid #ddd;z-index:1}
.bar label{font-weight:600;cursor:pointer}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .6em;border-bottom:1px solid #e3e3e3;text-align:left}
td.n,th.n{text-align:right}
section.layer{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin:1.2em 0}
.warnings{background:#fff4e5;border-left:4px solid #e8890c;padding:.4em .8em;margin:.6em 0}
.warnings li{margin:.15em 0}
.palette img{min-width:min(100%,480px);max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(128px,1fr));gap:10px;margin-top:.8em}
.card{border:2px solid #e3e3e3;border-radius:6px;padding:6px;background:#fff;font-size:12px}
.card img,.card .noimage{width:100%;aspect-ratio:1/1;object-fit:contain;image-rendering:pixelated;display:block;background:#eee}
.card .noimage{display:flex;align-items:center;justify-content:center;color:#a00}
.card.unconverged{border-color:#d33;background:#fff0f0}
.badge{display:inline-block;padding:0 .45em;border-radius:3px;color:#fff;font-weight:600}
.converged{background:#2e7d32}.rescued{background:#1565c0}.dead{background:#616161}.unwinnable{background:#6a1b9a}
.failed{background:#c62828}
.card.converged,.card.rescued,.card.dead,.card.unwinnable,.card.failed{background:#fff}
.card.unconverged{background:#fff0f0}
.idx{font-weight:700;font-size:13px}
body.only-unconverged .card:not(.unconverged){display:none}
.none-note{display:none;color:#2e7d32}
body.only-unconverged section[data-unconverged="0"] .none-note{display:block}
details{margin:.4em 0}summary{cursor:pointer;color:#333}
.strip img{height:32px;width:32px;object-fit:cover;image-rendering:pixelated;margin-right:2px;vertical-align:middle}
"""

SCRIPT = """
(function () {
  var box = document.getElementById('only-unconverged');
  function apply() {
    document.body.classList.toggle('only-unconverged', box.checked);
    if (box.checked) { history.replaceState(null, '', '#unconverged'); }
    else if (location.hash === '#unconverged') { history.replaceState(null, '', location.pathname); }
  }
  box.addEventListener('change', apply);
  if (location.hash === '#unconverged') { box.checked = true; }
  apply();
})();
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _href(path: Path) -> str:
    return quote(path.as_posix())


def _where(folder: Path, out: Path) -> Path:
    return Path(os.path.relpath(folder, out))


def render_index(views: list[LayerView], out: Path) -> str:
    """The whole index.html for `views` of OUT (image paths relative to OUT)."""
    total = {s: sum(v.counts[s] for v in views) for s in STATUSES}
    unconverged = sum(total[s] for s in UNCONVERGED)
    rows = "".join(
        f'<tr data-layer="{_e(v.layer)}"><td><a href="#{_e(_anchor(v))}">{_e(v.layer)}</a></td>'
        f'<td>{_e(v.manifest.get("model", {}).get("layer_type", ""))}</td><td>{_e(_shape(v))}</td>'
        f'<td class="n">{len(v.entries)}</td>'
        + "".join(f'<td class="n" data-layer="{_e(v.layer)}" data-count="{s}">{v.counts[s]}</td>' for s in STATUSES)
        + f'<td class="n">{len(v.missing)}</td><td class="n">{v.seconds:.1f}</td>'
        f'<td class="strip"><a href="#{_e(_anchor(v))}">{_strip(v, out)}</a></td></tr>'
        for v in views)
    head = "".join(f'<th class="n">{s}</th>' for s in STATUSES)
    sections = "".join(_section(v, out) for v in views) or "<p>No manifest in this folder yet.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>filtervis: {_e(out.resolve().name)}</title>
<style>{CSS}</style></head>
<body>
<h1>filtervis report: {_e(out.resolve().name)}</h1>
<p class="meta">{len(views)} layer{'s' if len(views) != 1 else ''}, {sum(len(v.entries) for v in views)} filters;
written {_e(time.strftime('%Y-%m-%d %H:%M:%S %z'))} by filtervis {_e(__version__)} from the manifests in this folder.</p>
<div class="bar"><label><input type="checkbox" id="only-unconverged"> show only unconverged filters
(<span id="unconverged-total">{unconverged}</span>: {_e(_either(UNCONVERGED))})</label></div>
<table class="totals overview"><tr><th>layer</th><th>type</th><th>output shape</th><th class="n">filters</th>{head}
<th class="n">missing</th><th class="n">seconds</th><th>pictures</th></tr>{rows}</table>
{sections}
<script>{SCRIPT}</script>
</body></html>
"""


STRIP = 8  # pictures of a layer in its row of the overview


def _either(names) -> str:
    """`a, b or c`."""
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def _shape(view: LayerView) -> str:
    shape = view.manifest.get("model", {}).get("layer_shape")
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")" if shape else ""


def _strip(view: LayerView, out: Path) -> str:
    """The first STRIP pictures of the layer, small, for its row of the overview."""
    where = _where(view.folder, out)
    files = [e["file"] for e in view.entries if e.get("file") and (view.folder / e["file"]).is_file()][:STRIP]
    return "".join(f'<img src="{_href(where / f)}" alt="{_e(view.layer)} {_e(f)}">' for f in files)


def _anchor(view: LayerView) -> str:
    return "layer-" + files.layer_dirname(view.layer)


def _section(view: LayerView, out: Path) -> str:
    where = _where(view.folder, out)
    manifest = view.manifest
    model = manifest.get("model", {})
    model_text = ", ".join(f"{k} {v}" for k, v in model.items() if v not in (None, "") and k != "classes")
    params = "".join(f"<tr><td>--{_e(k.replace('_', '-'))}</td><td>{_e(json.dumps(v))}</td></tr>"
                     for k, v in sorted(manifest.get("params", {}).items()))
    versions = ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items())
    warnings = view.warnings()
    warn = ("<ul class=\"warnings\">" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>") if warnings else ""
    palettes = "".join(f'<p class="palette"><a href="{_href(where / p)}"><img src="{_href(where / p)}" '
                       f'alt="palette of {_e(view.layer)}"></a></p>' for p in view.palettes)
    cards = "".join(_card(entry, where) for entry in view.entries)
    files = ", ".join(_e(p.name) for p in view.manifests)
    return f"""
<section class="layer" id="{_e(_anchor(view))}" data-layer="{_e(view.layer)}" data-unconverged="{len(view.unconverged)}">
<h2>{_e(view.layer)}</h2>
<p class="meta">model: {_e(model_text)}</p>
<p class="meta">{len(view.entries)} of {len(view.scope)} filters: {', '.join(f'{n} {s}' for s, n in view.counts.items())};
{view.seconds:.1f} s; from {files} ({_e(where.as_posix())})</p>
{warn}
<details><summary>run parameters</summary><table>{params}</table><p class="meta">{_e(versions)}; created
{_e(manifest.get('created', '?'))}</p></details>
{palettes}
<p class="none-note">No unconverged filter in this layer.</p>
<div class="grid">{cards}</div>
</section>"""


def _card(entry: dict, where: Path) -> str:
    status = filter_status(entry)
    index = int(entry["index"])
    extra = " unconverged" if status in UNCONVERGED else ""
    activation = entry.get("activation")
    act = "-" if activation is None else f"{activation:.4g}"
    if entry.get("file"):
        src = _href(where / entry["file"])
        picture = f'<a href="{src}"><img src="{src}" alt="filter {index}"></a>'
    else:
        picture = '<div class="noimage">no image (NaN/Inf)</div>'
    return (f'<figure class="card {status}{extra}" data-index="{index}" data-status="{status}" style="margin:0">'
            f'{picture}<figcaption><span class="idx">#{index}</span> <span class="badge {status}">{status}</span>'
            f'<br>activation {_e(act)}<br>steps {_e(entry.get("steps", "-"))}</figcaption></figure>')
