"""Benchmark of the 10-model sanity check (issue 15): serial against ``--scheduler local --workers 2``. Prints a
markdown table.

Usage:  python bench/bench_sanity_cluster.py [--n-samples 500] [--family tiny10] [--metrics ...] [--out DIR]

Each run is ``python -m gbs_core --cache-dir FRESH sanity-check --family tiny10 ...`` in its own process with its own
empty disk cache (so both extract every model), timed by wall clock, with the peak resident memory of the process
tree's largest member from ``/usr/bin/time -v`` (the client; a LocalCluster's workers are separate processes). The
two runs' result files (sanity.csv, sanity_per_layer.csv, sanity_pairs.csv, heatmap_*.csv) are then compared: the
largest absolute difference over every number, and whether the files are byte-identical. "load" is the 1-minute load
average before -> after the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(label: str, extra: list[str], args, out: Path) -> dict:
    cache = Path(tempfile.mkdtemp(prefix=f"gbs-bench-{label}-cache-"))
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "gbs_core", "--cache-dir", str(cache), "sanity-check",
           "--family", args.family, "--n-samples", str(args.n_samples), "--out", str(out / label), *extra]
    if args.metrics:
        cmd += ["--metrics", args.metrics]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{label} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", proc.stderr)
    return {"label": label, "seconds": seconds, "rss_mb": int(rss.group(1)) / 1024 if rss else float("nan"),
            "cpu": cpu.group(1) + "%" if cpu else "?", "load": f"{load0:.2f} -> {os.getloadavg()[0]:.2f}"}


def _compare(a: Path, b: Path) -> tuple[int, bool, float]:
    import numpy as np
    import pandas as pd

    files = sorted(p.name for p in a.glob("*.csv"))
    identical, worst = True, 0.0
    for name in files:
        identical &= (a / name).read_bytes() == (b / name).read_bytes()
        x, y = pd.read_csv(a / name), pd.read_csv(b / name)
        if list(x.columns) != list(y.columns) or len(x) != len(y):
            return len(files), False, float("inf")
        nx_, ny_ = x.select_dtypes("number").to_numpy(float), y.select_dtypes("number").to_numpy(float)
        both = ~(np.isnan(nx_) & np.isnan(ny_))
        if nx_.size:
            worst = max(worst, float(np.nanmax(np.abs(nx_ - ny_)[both], initial=0.0)))
        if not x.select_dtypes(exclude="number").equals(y.select_dtypes(exclude="number")):
            return len(files), False, float("inf")
    return len(files), identical, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=500)
    parser.add_argument("--family", default="tiny10")
    parser.add_argument("--metrics", default=None, help="comma-separated indices (default: all 12)")
    parser.add_argument("--out", default=None, help="where the two runs write (default: a temp folder)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="gbs-bench-sanity-"))
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average at start "
          f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}; results in {out}\n")
    rows = [_run("serial", [], args, out), _run("local2", ["--scheduler", "local", "--workers", "2"], args, out)]
    n_files, identical, worst = _compare(out / "serial", out / "local2")
    print(f"sanity check of the {args.family} seeds, N = {args.n_samples}, metrics {args.metrics or 'all 12'}\n")
    print("| run | wall s | client peak RSS MB | CPU | load (1 min) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['seconds']:.1f} | {r['rss_mb']:.0f} | {r['cpu']} | {r['load']} |")
    print(f"\nserial / local2: {rows[0]['seconds'] / rows[1]['seconds']:.2f}x; {n_files} result files, "
          f"byte-identical: {identical}, largest |difference|: {worst:.3g}")


if __name__ == "__main__":
    main()
