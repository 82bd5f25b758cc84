"""``python -m gbs_core.zoo``: train the bundled zoo (``train``) or list it (``list``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gbs_core.data import load_digits
from gbs_core.zoo.registry import ARCHITECTURES, ZooEntry, build_model, file_sha256, list_zoo, write_manifest_entry, zoo_dir
from gbs_core.zoo.train import TrainConfig, count_parameters, evaluate, fit

# Epochs per architecture for the committed zoo (chosen so every model clears 95% test accuracy on digits).
DEFAULT_EPOCHS = {"tiny10": 30, "resnet20": 30, "resnet56": 30, "vgg11": 30, "vgg16": 30, "mlp8": 40}
DEFAULT_LR = {"mlp8": 0.05}


def train_one(arch: str, seed: int, epochs: int, out: Path, lr: float, name: str) -> ZooEntry:
    torch.manual_seed(seed)
    model = build_model(arch)
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed)
    train, test = load_digits("train"), load_digits("test")

    def report(log):
        print(f"  [{name}] epoch {log.epoch:3d}/{epochs}  loss {log.loss:.4f}  train acc {log.train_accuracy:.4f}"
              f"  ({log.seconds:.1f} s)", flush=True)

    fit(model, train, cfg, progress=report)
    acc = evaluate(model, test)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    entry = ZooEntry(name=name, arch=arch, seed=seed, epochs=epochs, optimizer="sgd-nesterov-cosine", lr=lr,
                     batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, test_accuracy=acc,
                     n_params=count_parameters(model), sha256=file_sha256(path), file=path.name)
    write_manifest_entry(out, entry)
    print(f"{name}: test accuracy {acc:.4f}, {entry.n_params} parameters -> {path}", flush=True)
    return entry


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
            train_one(arch, seed, epochs, out, DEFAULT_LR.get(arch, 0.05), name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
