"""Modularity curve of every bundled zoo model on one bundled data set: a table for RESULTS.md and one chart.

    .venv/bin/python bench/zoo_curves.py --out out/curves             # the digits in noise (default), N = 500, k = 3
    .venv/bin/python bench/zoo_curves.py --data digits --out out/curves_digits

Writes curves.csv (model, training data, depth, layer, Q, dQ, flagged), summary.csv (one row per model: raw-pixel
Q, first and last layer Q, rise, layers flagged by dQ < 0.03), curves.html (all curves, normalised depth), and prints
summary.csv as a markdown table. Features and curves go through the disk cache, so a rerun is fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from gbs_core import figures  # noqa: E402
from gbs_core.analysis import feature_set, modularity_by_layer, modularity_table  # noqa: E402
from gbs_core.cache import DiskCache  # noqa: E402
from gbs_core.data import load_bundled  # noqa: E402
from gbs_core.graphs import knn_graph  # noqa: E402
from gbs_core.metrics.modularity import modularity  # noqa: E402
from gbs_core.pipeline import ModelSpec, load_model  # noqa: E402
from gbs_core.zoo.registry import list_zoo  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=["digits-noise", "digits"], default="digits-noise")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.03)
    ap.add_argument("--models", default=None, help="Comma-separated zoo names (default: every finished model).")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = DiskCache()
    data = load_bundled(args.data, "test").subsample(args.n, seed=0)
    q_raw = modularity(knn_graph(data.images.flatten(1).numpy(), args.k), data.labels)
    names = args.models.split(",") if args.models else [e.name for e in list_zoo()]
    entries = {e.name: e for e in list_zoo(include_checkpoints=True)}
    tables, rows = [], []
    for name in names:
        t0 = time.perf_counter()
        loaded = load_model(ModelSpec("zoo", name))
        fs = feature_set(loaded, data, None, pool=False, cache=cache)
        table = modularity_table(modularity_by_layer(fs, k=args.k, cache=cache), threshold=args.threshold)
        table = table.assign(model=name, training_data=entries[name].data_label)
        tables.append(table)
        q = table["q"].to_numpy()
        rows.append({"model": name, "training data": entries[name].data_label,
                     "held-out acc (own data)": round(entries[name].test_accuracy, 4), "layers": len(q),
                     "Q raw pixels": round(q_raw, 3), "Q first": round(q[0], 3), "Q max": round(q.max(), 3),
                     "Q last": round(q[-1], 3), "rise": round(q[-1] - q[0], 3),
                     f"flagged (dQ<{args.threshold})": int(table["prunable"].sum())})
        print(f"{name}: {len(q)} layers, Q {q[0]:.3f} -> {q[-1]:.3f} ({time.perf_counter() - t0:.1f} s)",
              file=sys.stderr, flush=True)
    curves = pd.concat(tables, ignore_index=True)
    curves.to_csv(args.out / "curves.csv", index=False)
    summary = pd.DataFrame(rows)
    summary.to_csv(args.out / "summary.csv", index=False)
    fig = figures.modularity_chart(tables, normalized=True)
    fig.update_layout(title=f"Modularity over depth, every zoo model, {data.dataset_id}, N = {len(data)}, k = {args.k}")
    fig.write_html(args.out / "curves.html", include_plotlyjs=True, full_html=True)
    print("| " + " | ".join(summary.columns) + " |")
    print("|" + "---|" * len(summary.columns))
    for row in summary.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
