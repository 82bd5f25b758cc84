"""Benchmark of the approximate kNN graph (issue 15): exact vs NN-descent kNN graph (k=3) + modularity at large N.
Prints a markdown table.

Usage:  python bench/bench_knn_scale.py [--quick] [--sizes 2000,5000,...] [--neighbors 15,30] [--data isotropic]

Data (seeded): 10 classes, D = 1024, float32. "isotropic": x = c_y + 5.5 * e with class means c ~ N(0, I) and noise
e ~ N(0, I); the noise dominates, so many exact neighbours cross classes (Q about 0.6-0.7) and the neighbour search is
hard (high intrinsic dimension). "lowrank": x = c_y + 3 * z W + e with a rank-32 latent z (low intrinsic dimension,
closer to trained features; Q about 0.5).

Every case runs in a fresh spawned process that first builds its data and runs the same search once on tiny data, so
that one-off costs per process (torch's thread pool; for NN-descent numba's JIT compile, tens of seconds) are not in
the timing: they are reported as "warm-up s". It then resets the peak-RSS counter (/proc/self/clear_refs): "extra MB"
is the resident memory the operation added on top of the data, "process MB" the whole process's peak (data generation
and JIT included). The timed operation is the directed graph
``knn_graph(X, 3, symmetrize=False, method=...)`` (its neighbours give recall@3), its symmetrisation (what
``symmetrize=True`` does) and ``modularity(A, labels)``. "load" is the 1-minute load average (as ``uptime`` shows it)
before -> after the case: the machine may be shared.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_CLASSES = 10
D = 1024
K = 3
ISO_NOISE = 5.5
LOWRANK_RANK, LOWRANK_SCALE = 32, 3.0


def _data(n: int, kind: str, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % N_CLASSES
    X = rng.standard_normal((N_CLASSES, D), dtype=np.float32)[y]
    if kind == "isotropic":
        X += rng.standard_normal((n, D), dtype=np.float32) * np.float32(ISO_NOISE)
    else:
        W = rng.standard_normal((LOWRANK_RANK, D), dtype=np.float32) / np.float32(np.sqrt(LOWRANK_RANK))
        X += (rng.standard_normal((n, LOWRANK_RANK), dtype=np.float32) * np.float32(LOWRANK_SCALE)) @ W
        X += rng.standard_normal((n, D), dtype=np.float32)
    return X, y


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _task(params: dict, queue) -> None:
    import numpy as np

    from gbs_core.graphs import knn_graph
    from gbs_core.metrics.modularity import modularity

    X, y = _data(params["n"], params["data"])
    # Warm-up on tiny data: torch's thread pool for both, numba's JIT compile for NN-descent.
    t = time.perf_counter()
    knn_graph(np.random.default_rng(1).random((300, 8), dtype=np.float32), K, method=params["method"])
    warm = time.perf_counter() - t
    hwm_before = _status_kb("VmHWM")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the VmHWM peak counter
    except OSError:
        pass
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    G = knn_graph(X, K, symmetrize=False, method=params["method"], approx_neighbors=params.get("neighbors", 30))
    A = ((G + G.T) * 0.5).tocsr()
    A.eliminate_zeros()
    A.sort_indices()
    q = modularity(A, y)
    elapsed = time.perf_counter() - t0
    hwm = _status_kb("VmHWM")
    queue.put(
        {
            "s": elapsed,
            "extra_mb": max(hwm - base, 0) / 1024,
            "process_mb": max(hwm, hwm_before) / 1024,
            "q": q,
            "warm": warm,
            "indptr": G.indptr,
            "indices": G.indices,
        }
    )


def run_case(**params) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_task, args=(params, q))
    load0 = os.getloadavg()[0]
    p.start()
    res = q.get()
    p.join()
    res["load"] = (load0, os.getloadavg()[0])
    return res


def _machine() -> str:
    import torch

    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    from importlib.metadata import version

    return (
        f"machine: {model}, nproc {nproc}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"pynndescent {version('pynndescent')} (NN-descent on 1 thread), numba {version('numba')}"
    )


def _graph(res: dict, n: int):
    import numpy as np
    import scipy.sparse as sp

    return sp.csr_array((np.ones(len(res["indices"])), res["indices"], res["indptr"]), shape=(n, n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--sizes", help="comma-separated sample counts (default 2000,5000,10000,20000,50000,100000)")
    ap.add_argument("--neighbors", default="15,30", help="approx_neighbors settings (default 15,30)")
    ap.add_argument("--data", choices=("isotropic", "lowrank"), default="isotropic")
    args = ap.parse_args()
    from gbs_core.graphs import knn_recall

    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [1000, 2000, 5000] if args.quick else [2000, 5000, 10000, 20000, 50000, 100000]
    settings = [int(s) for s in args.neighbors.split(",")]
    print(f"# bench_knn_scale {' '.join(sys.argv[1:]) or '(full)'}")
    print(f"command: .venv/bin/python bench/bench_knn_scale.py {' '.join(sys.argv[1:])}".rstrip())
    print(_machine())
    print(f"load average (1, 5, 15 min) at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"data: {args.data}, D = {D}, {N_CLASSES} classes, k = {K}\n")
    print(
        "| N | method | graph + Q s | exact / this | warm-up s (once per process) | extra MB | process MB "
        "| recall@3 | Q | abs dQ | load before -> after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    faster = {a: {} for a in settings}
    for n in sorted(sizes):
        ex = run_case(n=n, data=args.data, method="exact")
        E = _graph(ex, n)
        print(
            f"| {n} | exact | {ex['s']:.2f} | 1.00x | {ex['warm']:.1f} | {ex['extra_mb']:.0f} | {ex['process_mb']:.0f} | 1.000 "
            f"| {ex['q']:.4f} | 0 | {ex['load'][0]:.2f} -> {ex['load'][1]:.2f} |",
            flush=True,
        )
        for a in settings:
            r = run_case(n=n, data=args.data, method="approx", neighbors=a)
            recall = knn_recall(_graph(r, n), E, K)
            print(
                f"| {n} | approx ({a}) | {r['s']:.2f} | {ex['s'] / r['s']:.2f}x | {r['warm']:.1f} | {r['extra_mb']:.0f} "
                f"| {r['process_mb']:.0f} | {recall:.3f} | {r['q']:.4f} | {abs(r['q'] - ex['q']):.4f} "
                f"| {r['load'][0]:.2f} -> {r['load'][1]:.2f} |",
                flush=True,
            )
            faster[a][n] = r["s"] < ex["s"]
    print(f"\nload average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for a in settings:
        # The smallest N from which approx was faster at every larger N measured.
        wins = [n for n in faster[a] if all(faster[a][m] for m in faster[a] if m >= n)]
        print(f"crossover approx ({a}), warm-up excluded: faster than exact from N = {min(wins) if wins else 'never'}")


if __name__ == "__main__":
    main()
