"""Benchmark of the bounded-memory analysis (issue 15): a torchvision resnet18 (random init) on 224 px images, default
layers, kNN graph + modularity + motifs + linear CKA matrix, run by the command line under an address-space cap.

Usage:  python bench/bench_bounded.py [--n 1000] [--cap 4G] [--budget 1G] [--compare-n 300]

Each run is ``python -m gbs_core --no-cache analyze torchvision:resnet18 --input-size 224`` in a fresh process under
``prlimit --as=CAP`` and ``/usr/bin/time -v`` (wall time, peak RSS). With ``--compare-n N`` it also runs N samples once
bounded (under the cap) and once in memory (no cap, no budget limit) and prints the largest difference between their
modularity curves and CKA matrices.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(n: int, out: Path, *, cap: str | None, budget: str) -> dict:
    cmd = [sys.executable, "-m", "gbs_core", "--no-cache", "analyze", "torchvision:resnet18", "--input-size", "224",
           "--split", "train", "--n-samples", str(n), "--metrics", "linear_cka", "--memory-budget", budget,
           "--out", str(out)]
    if cap:
        from gbs_core.bounded import parse_bytes

        cmd = ["prlimit", f"--as={parse_bytes(cap)}", *cmd]
    done = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=ROOT, capture_output=True, text=True)
    err = done.stderr
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) * 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", err).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    summary = json.loads((out / "summary.json").read_text()) if done.returncode == 0 else {}
    return {"rc": done.returncode, "seconds": seconds, "peak_rss": rss, "summary": summary,
            "tail": "\n".join(err.splitlines()[-30:]) if done.returncode else ""}


def _load(out: Path):
    import numpy as np
    import pandas as pd

    q = pd.read_csv(out / "modularity.csv")["q"].to_numpy()
    cka = pd.read_csv(out / "similarity_linear_cka.csv").set_index("layer").to_numpy()
    return q, cka, np.loadtxt(out / "motifs.csv", delimiter=",", skiprows=1, usecols=(3, 4, 5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--cap", default="4G", help="address-space cap (prlimit --as)")
    ap.add_argument("--budget", default="1G", help="analyze --memory-budget")
    ap.add_argument("--compare-n", type=int, default=0, help="also compare bounded vs in-memory at this N")
    args = ap.parse_args()
    import torch

    from gbs_core.bounded import format_bytes

    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, device cpu, load before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| N | cap | budget | features | groups (streamed) | wall s | peak RSS | rc |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        r = _run(args.n, Path(tmp) / "main", cap=args.cap, budget=args.budget)
        mem = r["summary"].get("memory") or {}
        groups = mem.get("groups", [])
        print(f"| {args.n} | {args.cap} | {args.budget} | {format_bytes(mem.get('feature_bytes', 0))} | "
              f"{len(groups)} ({sum(g['streamed'] for g in groups)}) | {r['seconds']:.0f} | "
              f"{format_bytes(r['peak_rss'])} | {r['rc']} |")
        if r["rc"]:
            print("\n```\n" + r["tail"] + "\n```")
        if args.compare_n:
            a = _run(args.compare_n, Path(tmp) / "bounded", cap=args.cap, budget=args.budget)
            b = _run(args.compare_n, Path(tmp) / "memory", cap=None, budget="1T")
            for name, x in (("bounded", a), ("in memory", b)):
                mem = x["summary"].get("memory") or {}
                groups = mem.get("groups", [])
                print(f"| {args.compare_n} ({name}) | {args.cap if x is a else 'none'} | "
                      f"{args.budget if x is a else '1T'} | {format_bytes(mem.get('feature_bytes', 0))} | "
                      f"{len(groups)} ({sum(g['streamed'] for g in groups)}) | {x['seconds']:.0f} | "
                      f"{format_bytes(x['peak_rss'])} | {x['rc']} |")
            if a["rc"] == 0 and b["rc"] == 0:
                import numpy as np

                qa, ca, ma = _load(Path(tmp) / "bounded")
                qb, cb, mb = _load(Path(tmp) / "memory")
                print(f"\nN = {args.compare_n}, bounded vs in memory: max |dQ| {np.abs(qa - qb).max():.2e}, "
                      f"max |dCKA| {np.abs(ca - cb).max():.2e}, motif counts equal: {bool(np.array_equal(ma, mb))}")
    load = os.getloadavg()
    print(f"\nload after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
