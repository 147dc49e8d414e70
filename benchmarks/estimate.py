"""How close the time estimate a long layer prints comes to the real time, in one run.

    PYTHONPATH=. python benchmarks/estimate.py                       # block3_conv1, every filter, 96 px
    PYTHONPATH=. python benchmarks/estimate.py --layer block5_conv3 --filters 0-63 --size 128
    PYTHONPATH=. python benchmarks/estimate.py --layer all --filters random:4 --size 64   # the whole model

Runs `filtervis run --weights hed` (VGG16, offline) in a subprocess, notes when the estimate line
("filtervis: LAYER: N filters, ...: ~T left") reaches stderr, and compares T with the time from that
moment until the run ends (its last manifest written). Prints estimate, real time and their ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ESTIMATE = re.compile(r"filtervis: (.+?): .*: ~(?:(\d+) min)? ?(?:(\d+) s)? left")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="block3_conv1")
    parser.add_argument("--filters", default="all")
    parser.add_argument("--size", default="96")
    parser.add_argument("--extra", default="", help="more `filtervis run` options")
    args = parser.parse_args(argv)
    out = tempfile.mkdtemp(prefix="filtervis-estimate-")
    command = [sys.executable, "-m", "filtervis", "run", "--weights", "hed", "--layer", args.layer, "--filters",
               args.filters, "--size", args.size, "--out", out, *args.extra.split()]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    began = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    estimate = when = None
    for line in process.stderr:
        match = ESTIMATE.search(line)
        if match and estimate is None:
            when = time.perf_counter()
            estimate = 60.0 * float(match.group(2) or 0) + float(match.group(3) or 0)
            print(line.strip(), f"(after {when - began:.0f} s)", flush=True)
    code = process.wait()
    ended = time.perf_counter()
    if code:
        raise SystemExit(f"filtervis failed with exit code {code}: {' '.join(command)}")
    if estimate is None:
        raise SystemExit("the run printed no estimate (it is printed for layers estimated at 60 s or more)")
    real = ended - when
    print(f"{args.layer}, filters {args.filters}, {args.size} px: estimated {estimate:.0f} s left, took {real:.0f} s "
          f"from then (whole run {ended - began:.0f} s): estimate / real = {estimate / real:.2f}")


if __name__ == "__main__":
    main()
