"""Print the README's model-zoo table from assets/zoo/manifest.json (so the table is never typed by hand).

    .venv/bin/python scripts/zoo_table.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gbs_core.zoo.registry import list_checkpoints, list_zoo, zoo_dir  # noqa: E402


def main() -> None:
    print("| name | architecture | training data | seed | epochs | parameters | stored as | size | held-out accuracy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for e in list_zoo():
        size = e.path.stat().st_size / 2**20
        ck = len(list_checkpoints(e.name)) - 1
        note = f" (+{ck} checkpoints)" if ck > 0 else ""
        print(f"| `{e.name}`{note} | {e.arch} | {e.data_label} | {e.seed} | {e.epochs} | {e.n_params:,} | "
              f"{e.extra.get('precision', 'float32')} | {size:.2f} MiB | {100 * e.test_accuracy:.2f}% |")
    parts = {}
    for p in zoo_dir().rglob("*.pt"):
        key = "checkpoints" if p.parent.name == "checkpoints" else p.parent.name
        parts[key] = parts.get(key, 0) + p.stat().st_size
    print()
    print(", ".join(f"{k}: {v / 2**20:.1f} MiB" for k, v in sorted(parts.items())) +
          f"; total {sum(parts.values()) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
