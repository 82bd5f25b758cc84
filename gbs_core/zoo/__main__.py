"""``python -m gbs_core.zoo``: train the bundled zoo (``train``) or list it (``list``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gbs_core.zoo.registry import ARCHITECTURES, list_zoo, zoo_dir
from gbs_core.zoo.train import DEFAULT_EPOCHS, DEFAULT_LR, train_zoo_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gbs_core.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train zoo models on the digits and record them in the manifest")
    tr.add_argument("--arch", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    tr.add_argument("--seeds", nargs="+", type=int, default=None,
                    help="seeds to train (default: 0-9 for tiny10, 0 for the others)")
    tr.add_argument("--epochs", type=int, default=None, help="override the per-architecture epoch count")
    tr.add_argument("--out", type=Path, default=None, help="folder for weights and manifest (default: the zoo)")
    sub.add_parser("list", help="print the bundled models and their recorded accuracy")
    args = parser.parse_args(argv)

    if args.command == "list":
        for e in list_zoo():
            print(f"{e.name:12s} {e.arch:9s} seed {e.seed}  acc {e.test_accuracy:.4f}  params {e.n_params:,}")
        return 0
    out = args.out or zoo_dir()
    for arch in args.arch:
        seeds = args.seeds if args.seeds is not None else (list(range(10)) if arch == "tiny10" else [0])
        for seed in seeds:
            name = f"{arch}-s{seed}" if arch == "tiny10" else arch
            epochs = args.epochs or DEFAULT_EPOCHS[arch]
            train_zoo_model(arch, seed, epochs=epochs, out=out, lr=DEFAULT_LR.get(arch, 0.05), name=name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
