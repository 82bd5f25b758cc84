"""``python -m gbs_core``: the analyses, the experiments (pruning, the sanity check, training dynamics, adversarial
inputs) and the zoo from the command line.

Every command writes CSV and JSON into ``--out`` (created if missing) and, with ``--html``, plotly figures as
self-contained HTML files (PNG export needs kaleido, which is not installed). Results go through the same disk cache
as the dashboard (``--cache-dir``, default ``$GBS_CACHE_DIR`` or ``~/.cache/gbs-explorer``), so what a batch job
computed opens instantly in the dashboard, and a repeated command does not recompute.

MODEL is a zoo name (``resnet56``, ``tiny10-s3``; see ``python -m gbs_core zoo list``), ``torchvision:NAME[:SEED]`` or
``timm:NAME[:SEED]`` (randomly initialised), or ``checkpoint:ARCH:PATH`` (a state_dict or .safetensors file; ARCH is a
zoo architecture, a torchvision one, or ``timm:NAME``). A head that does not match the data is kept but not analysed.

DATA (``--data``) is ``digits-noise`` (the bundled default), ``digits``, ``folder:PATH`` (one sub-folder of images per
class), ``cifar10:PATH``, ``cifar100:PATH`` (the python-pickle folders) or ``npz:PATH`` (saved activations, for
``analyze``). An input adapter fits the data to each model (channels, size, the family's normalisation); override it
with ``--input-size`` and ``--normalise``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path

import click

__all__ = ["main", "parse_model_spec"]


def parse_model_spec(text: str):
    """A :class:`~gbs_core.pipeline.ModelSpec` from ``NAME``, ``torchvision:NAME[:SEED]``, ``timm:NAME[:SEED]`` or
    ``checkpoint:ARCH:PATH`` (ARCH may itself be ``torchvision:NAME`` or ``timm:NAME``)."""
    from gbs_core.pipeline import ModelSpec

    kind, _, rest = text.partition(":")
    if not rest:
        return ModelSpec("zoo", text)
    if kind in ("torchvision", "timm"):
        name, _, seed = rest.partition(":")
        if seed and not seed.isdigit():
            raise click.BadParameter(f"seed {seed!r} in {text!r} is not a non-negative integer")
        return ModelSpec(kind, name, seed=int(seed or 0))  # type: ignore[arg-type]
    if kind == "checkpoint":
        arch, _, path = rest.partition(":")
        if arch in ("torchvision", "timm", "zoo"):
            name, _, path = path.partition(":")
            arch = f"{arch}:{name}"
        if not path:
            raise click.BadParameter(f"{text!r}: write checkpoint:ARCH:PATH (ARCH: resnet56, resnet18, timm:NAME)")
        return ModelSpec("checkpoint", arch, checkpoint=path)
    raise click.BadParameter(f"{text!r}: use a zoo name, torchvision:NAME[:SEED], timm:NAME[:SEED] or "
                             "checkpoint:ARCH:PATH")


def _adapter(ctx: click.Context):
    from gbs_core.pipeline import AdapterChoice

    obj = ctx.find_root().obj
    return AdapterChoice(size=obj.get("input_size"), normalise=obj.get("normalise") or "auto")


def _load(text: str, data=None, ctx: click.Context | None = None):
    """The model MODEL names, shaped for ``data`` (a Dataset; default the bundled digits' shape), saying its adapter
    and notes on stderr."""
    return _load_spec(parse_model_spec(text), data, ctx)


def _load_spec(spec, data=None, ctx: click.Context | None = None):
    """:func:`_load` of a ModelSpec."""
    from gbs_core.pipeline import load_model

    ctx = ctx or click.get_current_context()
    shape = tuple(data.input_shape) if data is not None else (1, 16, 16)
    classes = data.n_classes if data is not None else 10
    try:
        loaded = load_model(spec, data_shape=shape, num_classes=classes, adapter=_adapter(ctx))
    except (KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from exc
    if loaded.adapter:
        _say(f"  {loaded.label}: input adapter {loaded.adapter}")
    for note in loaded.notes:
        _say(f"  {loaded.label}: {note}")
    return loaded


def _data_spec(value: str | None, model: str | None = None):
    """``--data`` as a DataSpec; without it, the training data of zoo model ``model`` (else the default)."""
    from gbs_core.sources import DataSpec, parse_data_spec
    from gbs_core.zoo.registry import training_source_of

    if value is None:
        return DataSpec(training_source_of(parse_model_spec(model).name) if model else "digits-noise")
    try:
        return parse_data_spec(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from exc


def _analysis_data(spec, n: int | None, seed: int, split: str = "test"):
    """The samples to analyse from ``spec`` (the training split with ``split="train"``), N clamped with a note."""
    from gbs_core.data import DataError
    from gbs_core.sources import analysis_data, clamp_samples, train_test

    try:
        data = train_test(spec, seed=seed)[0] if split == "train" else analysis_data(spec)
        data, note = clamp_samples(data, n, seed=seed)
    except DataError as exc:
        raise click.ClickException(str(exc)) from exc
    if note:
        _say(f"  {note}")
    return data


def _csv_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


COUNT = click.IntRange(min=1)  # sample counts, neighbours, batches, threads: at least one
SEED = click.IntRange(min=0, max=2**32 - 1)  # numpy's and torch's seeds
EPOCHS = click.IntRange(min=0, max=10_000)


class FiniteFloat(click.ParamType):
    """A finite float (no nan or inf), optionally strictly positive."""

    name = "number"

    def __init__(self, positive: bool = False):
        self.positive = positive

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
        if number != number or number in (float("inf"), float("-inf")):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.positive and number <= 0:
            self.fail(f"{value!r} must be greater than 0", param, ctx)
        return number


LEARNING_RATE = FiniteFloat(positive=True)
FINITE = FiniteFloat()


def _metric_list(value: str | None) -> list[str]:
    """``--metrics``: comma-separated names of :data:`~gbs_core.metrics.SIMILARITY_METRICS`, checked."""
    from gbs_core.metrics import SIMILARITY_METRICS

    metric_list = _csv_list(value) or []
    bad = [m for m in metric_list if m not in SIMILARITY_METRICS]
    if bad:
        raise click.BadParameter(f"unknown metric(s) {bad}; choose from {', '.join(SIMILARITY_METRICS)}",
                                 param_hint="--metrics")
    return metric_list


def _int_list(value: str | None, option: str, *, minimum: int = 0) -> list[int]:
    """Comma-separated integers >= ``minimum``; a BadParameter naming ``option`` otherwise."""
    out = []
    for item in _csv_list(value) or []:
        try:
            number = int(item)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not an integer; write comma-separated integers, e.g. 0,1,2",
                                     param_hint=option) from None
        if number < minimum:
            raise click.BadParameter(f"{number} is below {minimum}", param_hint=option)
        out.append(number)
    return out


def _writable_folder(ctx, param, value: Path | None) -> Path | None:
    """``--out``: created if missing, and it must take a file; else a clear error before any work starts."""
    if value is None:
        return None
    try:
        value.mkdir(parents=True, exist_ok=True)
        probe = value / f".gbs-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise click.BadParameter(f"cannot write into {value} ({exc.strerror or exc}); choose a writable folder",
                                 ctx=ctx, param=param) from None
    return value


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _written(path: Path) -> Path:
    _say(f"wrote {path}")
    return path


def _json_safe(obj):
    """``obj`` with NaN and infinities as None, so the file is strict JSON (null)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _write_json(path: Path, obj) -> Path:
    obj = json.loads(json.dumps(obj, default=float))  # numpy scalars -> floats
    path.write_text(json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n")
    return _written(path)


def _write_csv(path: Path, df) -> Path:
    df.to_csv(path, index=False)
    return _written(path)


def _write_figures(out: Path, figs: dict, formats: tuple[str, ...], *, title: str, **settings) -> None:
    """The command's figures in each of ``formats``: "html" writes one self-contained figures.html (an index, plotly
    inlined once); png/svg/pdf write ``<name>_<settings>.<format>`` through kaleido. Each figure gets the settings as
    its subtitle."""
    from gbs_core import export, figures

    if not formats or not figs:
        return
    subtitle = figures.settings_text(**settings)
    for fig in figs.values():
        figures.stamp(fig, subtitle)
    if "html" in formats:
        _written(export.write_figures_html(out / "figures.html", title, figs, intro=subtitle))
    static = [f for f in formats if f != "html"]
    if static:
        _say(f"  writing {len(figs) * len(static)} static figure(s) through kaleido")
        try:
            paths = export.write_static({figures.file_stem(name, **settings): fig for name, fig in figs.items()},
                                        out, static)
        except export.ExportError as exc:
            raise click.ClickException(str(exc)) from exc
        for path in paths:
            _written(path)


def _cache(ctx: click.Context):
    """The disk cache of ``--cache-dir``; a folder that cannot be used is said once on stderr and the command goes
    on without a cache."""
    import warnings

    from gbs_core.cache import CacheWarning, DiskCache

    if ctx.find_root().obj["no_cache"]:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        cache = DiskCache(ctx.find_root().obj["cache_dir"])
    if cache.disabled:
        _say(f"warning: {cache.problem}")
    return cache


data_option = click.option(
    "--data", "data_text", default=None, metavar="DATA",
    help="digits-noise (default), digits, folder:PATH, cifar10:PATH, cifar100:PATH or npz:PATH (saved activations).")
model_data_option = click.option(
    "--data", "data_text", default=None, metavar="DATA",
    help="digits-noise, digits, folder:PATH, cifar10:PATH or cifar100:PATH (default: the zoo model's training data; "
         "digits-noise for other models).")


def _store_root(ctx: click.Context, param: click.Parameter, value):
    ctx.find_root().obj[param.name] = value
    return value


def adapter_options(f):
    """``--input-size`` and ``--normalise``: overrides of the input adapter of every model of the command."""
    f = click.option("--normalise", type=click.Choice(["auto", "none", "imagenet"]), default=None, expose_value=False,
                     callback=_store_root, help="Input normalisation (default auto: the model family's; ImageNet's "
                     "for torchvision and timm, none for the zoo).")(f)
    return click.option("--input-size", type=click.IntRange(4, 1024), default=None, expose_value=False,
                        callback=_store_root, help="Side the images are resized to before the model (default: the "
                        "model's own size, or the data's, at least 32 for torchvision and timm).")(f)


def _fraction_printer(label: str):
    last = [-1.0]

    def report(done: int, total: int, message: str = "") -> None:
        frac = done / total if total else 1.0
        if frac - last[0] >= 0.1 or done == total or message:
            last[0] = frac
            _say(f"  {label} {100 * frac:5.1f}%  {message}")

    return report


class _Commands(click.Group):
    """The command group: the project's own input errors (bad data, a bad weights file or manifest) that reach it
    become clean messages, never tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ValueError as exc:
            from gbs_core.data import DataError
            from gbs_core.zoo.families import WeightsError

            if isinstance(exc, DataError | WeightsError):
                raise click.ClickException(str(exc)) from exc
            raise


@click.group(help=__doc__, cls=_Commands)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Disk cache folder (default: $GBS_CACHE_DIR or ~/.cache/gbs-explorer).")
@click.option("--no-cache", is_flag=True, help="Compute everything afresh and store nothing.")
@click.option("--device", default="cpu", show_default=True, callback=lambda ctx, param, value: _device(value),
              help="Where models and metrics run: cpu, cuda or cuda:N.")
@click.pass_context
def main(ctx: click.Context, cache_dir: Path | None, no_cache: bool, device: str) -> None:
    ctx.ensure_object(dict)
    ctx.obj.update(cache_dir=cache_dir, no_cache=no_cache, device=device)


def _device(value: str) -> str:
    """``--device``: a torch device that exists on this machine."""
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise click.BadParameter(f"{value!r} is not a device; use cpu, cuda or cuda:N", param_hint="--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(f"{value!r}: this machine has no CUDA device (torch {torch.__version__} sees none); "
                                 "use cpu", param_hint="--device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise click.BadParameter(f"{value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                                 param_hint="--device")
    if dev.type not in ("cpu", "cuda"):
        raise click.BadParameter(f"{value!r}: only cpu and cuda devices are supported", param_hint="--device")
    return str(dev)


def _root_device(ctx: click.Context) -> str:
    return ctx.find_root().obj.get("device", "cpu")


out_option = click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
                          callback=_writable_folder,
                          help="Folder for the result files (created if missing).")
def analysis_options(f):
    """The options of what ``analyze`` and ``report`` compute: samples, seed, layers, pooling, k, batches, threshold,
    motif k, similarity metrics."""
    for option in reversed([
        click.option("--n-samples", type=COUNT, default=500, show_default=True,
                     help="Images analysed (a stratified subsample; all there are when the data has fewer)."),
        click.option("--seed", type=SEED, default=0, show_default=True,
                     help="Seed of the stratified subsample (and of the graph layouts)."),
        click.option("--layers", "layer_list", default=None, help="Comma-separated layer names (default: the model's)."),
        click.option("--pool", is_flag=True, help="Average-pool conv maps over space before the analyses."),
        click.option("--k", type=COUNT, default=3, show_default=True, help="Neighbours of the modularity kNN graph."),
        click.option("--n-batches", type=COUNT, default=1, show_default=True,
                     help="Disjoint batches for the modularity curve."),
        click.option("--threshold", type=FINITE, default=0.03, show_default=True,
                     help="dQ threshold for prunable layers."),
        click.option("--motif-k", type=COUNT, default=5, show_default=True, help="Neighbours of the motif kNN graph."),
        click.option("--metrics", default="linear_cka,gbs_dense", show_default=True,
                     help="Comma-separated similarity metrics for layer x layer matrices (see SIMILARITY_METRICS)."),
    ]):
        f = option(f)
    return f


def html_option(f):
    """``--format html,png,svg,pdf`` and ``--html`` (= ``--format html``); the command gets the formats as ``html``
    (a tuple, empty for none)."""
    @functools.wraps(f)
    def command(*args, html: bool = False, fig_formats: str | None = None, **kwargs):
        formats: tuple[str, ...] = ()
        if fig_formats:
            from gbs_core.export import ExportError, parse_formats

            try:
                formats = parse_formats(fig_formats)
            except ExportError as exc:
                raise click.BadParameter(str(exc), param_hint="--format") from exc
        if html and "html" not in formats:
            formats = ("html", *formats)
        return f(*args, html=formats, **kwargs)

    command = click.option("--html", is_flag=True, help="Also write the figures on one self-contained HTML page "
                           "(figures.html); the same as --format html.")(command)
    return click.option("--format", "fig_formats", default=None, metavar="FORMATS",
                        help="Also write the figures: comma-separated html,png,svg,pdf (html: one "
                             "self-contained figures.html; png/svg/pdf: one file per figure, named with the "
                             "settings, through kaleido and the machine's Chromium).")(command)


@main.command()
@click.argument("model")
@out_option
@model_data_option
@adapter_options
def layers(model: str, out: Path, data_text: str | None) -> None:
    """List MODEL's layers on DATA: name, type, output shape, features, default or not, removable by pruning
    (layers.csv)."""
    from gbs_core.activations import list_layers
    from gbs_core.experiments.pruning import removable_units

    data = _analysis_data(_data_spec(data_text, model), 2, 0)
    loaded = _load(model, data)
    out.mkdir(parents=True, exist_ok=True)
    example = data.images[:2]
    infos = list_layers(loaded.model, example)
    default = loaded.default_layers()
    units = {u.name: u for u in removable_units(loaded.model, default, tuple(example.shape[1:]))}
    import pandas as pd

    df = pd.DataFrame([{
        "layer": i.name, "type": i.type, "output_shape": "x".join(map(str, i.output_shape)), "n_features": i.n_features,
        "default": i.name in default, "head": i.name == loaded.head, "removable": units[i.name].removable if i.name in units else None,
        "reason_not_removable": units[i.name].reason if i.name in units else "",
    } for i in infos])
    _write_csv(out / "layers.csv", df)
    click.echo(f"{loaded.label}: {len(df)} layers, {len(default)} analysed by default "
               f"({sum(u.removable for u in units.values())} removable)")


def _scheduler(ctx, param, value: str | None) -> str | None:
    from gbs_core.cluster import parse_scheduler

    try:
        return parse_scheduler(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def scheduler_options(f):
    """``--scheduler local|HOST:PORT`` and ``--workers N``: each model's feature extraction as a Dask task (a local
    cluster of N one-thread processes, or a running ``dask scheduler``); this process keeps the cache and computes the
    rest. The command gets ``client``: a ``distributed.Client``, open while it runs, or None (serial)."""
    @functools.wraps(f)
    def command(*args, scheduler: str | None = None, workers: int | None = None, **kwargs):
        if scheduler is None:
            if workers is not None:
                raise click.BadParameter("it sets the size of --scheduler local; without --scheduler the command runs "
                                         "serially", param_hint="--workers")
            return f(*args, client=None, **kwargs)
        import contextlib

        from gbs_core.cluster import LOCAL, TaskError, dask_client

        if workers is not None and scheduler != LOCAL:
            raise click.BadParameter(f"it sets the size of --scheduler local; the scheduler at {scheduler} has its own "
                                     "workers (start more with `dask worker`)", param_hint="--workers")
        with contextlib.ExitStack() as stack:
            try:
                client = stack.enter_context(dask_client(scheduler, workers=workers))
            except ConnectionError as exc:
                raise click.ClickException(str(exc)) from exc
            n = len(client.scheduler_info().get("workers", {}))
            _say(f"Dask: {n} worker(s) at {client.scheduler.address}")
            try:
                return f(*args, client=client, **kwargs)
            except TaskError as exc:
                raise click.ClickException(str(exc)) from exc

    command = click.option("--workers", type=COUNT, default=None,
                           help="Worker processes of --scheduler local (default 2, one thread each).")(command)
    return click.option("--scheduler", default=None, metavar="local|HOST:PORT", callback=_scheduler,
                        help="Extract each model's features as a Dask task: local (a cluster on this machine) or the "
                             "address of a running `dask scheduler` (default: serially here).")(command)


@main.command()
@click.argument("models", nargs=-1)
@out_option
@data_option
@adapter_options
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="test: the held-out split (all of a folder's images); train: the training split (a folder's "
                   "seeded 70% part).")
@analysis_options
@click.option("--memory-budget", "memory_budget", default=None, metavar="SIZE",
              help="Features (and Gram matrices) held in memory at once, e.g. 4G or 512M (default: "
                   "$GBS_MEMORY_BUDGET, else half the memory available). Over it, the layers that do not fit are "
                   "streamed through disk and each layer reduced to its Gram matrix; only linear_cka, "
                   "debiased_linear_cka, gbs_dense, gbs_knn then.")
@click.option("--knn", "knn_method", type=click.Choice(["exact", "approx", "auto"]), default="exact",
              show_default=True,
              help="Neighbour search of the modularity and motif kNN graphs: exact (all pairs), approx (NN-descent: "
                   "much faster past tens of thousands of samples, but it misses some true neighbours; see "
                   "BENCHMARKS.md) or auto (approx from 50,000 samples). Edge weights are exact either way.")
@click.option("--scratch-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Where layers over the memory budget are streamed while the analysis runs (default: the system's "
                   "temporary folder; removed afterwards).")
@html_option
@scheduler_options
@click.pass_context
def analyze(ctx, models, out, data_text, n_samples, split, seed, layer_list, pool, k, n_batches, threshold, motif_k,
            metrics, memory_budget, knn_method, scratch_dir, html, client):
    """Compute what the dashboard shows for MODELS on DATA (or for the saved activations of --data npz:PATH, with no
    MODEL): modularity curve and prunable layers, layer x layer similarity matrices (CKA, GBS, ...), triangle motif
    profile. Writes modularity.csv, prunable.json, similarity_<metric>.csv, motifs.csv, summary.json (and the figures
    with --format) into OUT, or with several models into one folder per model inside OUT. With --scheduler each
    model's analysis is one Dask task; this process writes the results into the cache."""
    from gbs_core.bounded import default_memory_budget, parse_bytes

    metric_list = _metric_list(metrics)
    t0 = time.perf_counter()
    spec = _data_spec(data_text)
    cache = _cache(ctx)
    try:
        budget = parse_bytes(memory_budget) if memory_budget is not None else default_memory_budget()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--memory-budget") from exc
    settings = dict(pool=pool, k=k, n_batches=n_batches, seed=seed, motif_k=motif_k, metrics=tuple(metric_list),
                    knn_method=knn_method, memory_budget=budget, device=_root_device(ctx), scratch_dir=scratch_dir)
    out.mkdir(parents=True, exist_ok=True)
    if spec.kind == "npz":
        if models:
            _say(f"  --data npz: the saved activations are analysed; MODEL {' '.join(models)!r} is not used")
        fs = _saved_feature_set(spec.path, _csv_list(layer_list))
        try:
            results = _analyze_saved(fs, cache, settings)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        _write_analysis(out, fs, results, None, None, spec, split, threshold, settings, html, t0)
        return
    if not models:
        raise click.UsageError("give a MODEL (or --data npz:PATH to analyse saved activations)")
    data = _analysis_data(spec, n_samples, seed, split)
    loaded = [_load(m, data) for m in models]
    folders = [out] if len(loaded) == 1 else [out / _model_folder(lm.label, i) for i, lm in enumerate(loaded)]
    try:
        done = _analyze_models(loaded, data, _csv_list(layer_list), cache, settings, client)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    for folder, lm, result in zip(folders, loaded, done, strict=True):
        from gbs_core.analysis import FeatureSet

        folder.mkdir(parents=True, exist_ok=True)
        fs = FeatureSet(lm.label, lm.model_id, data.dataset_id, pool, dict.fromkeys(result.layers), data.labels,
                        result.predictions, data.class_names)
        _write_analysis(folder, fs, (result.curve, result.motifs, result.matrices), lm, result, spec, split,
                        threshold, settings, html, t0)


def _model_folder(label: str, i: int) -> str:
    import re

    return f"{i + 1:02d}_" + (re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:60] or "model")


def _analyze_saved(fs, cache, settings: dict):
    from gbs_core.analysis import layer_similarity, modularity_by_layer, motifs_by_layer

    knn = settings["knn_method"]
    curve = modularity_by_layer(fs, k=settings["k"], n_batches=settings["n_batches"], seed=settings["seed"],
                                knn_method=knn, cache=cache, progress=_fraction_printer("modularity"))
    motifs = motifs_by_layer(fs, k=settings["motif_k"], knn_method=knn, cache=cache, progress=_fraction_printer("motifs"))
    matrices = {m: layer_similarity(fs, metric=m, cache=cache, progress=_fraction_printer(m))
                for m in settings["metrics"]}
    return curve, motifs, matrices


def _analyze_models(loaded: list, data, layers: list[str] | None, cache, settings: dict, client) -> list:
    """:func:`~gbs_core.bounded.analyze_model` of each model: here, one after the other, or, with a Dask client, the
    models whose results are not all cached as one task each (their results come back and are written here)."""
    from gbs_core.bounded import analyze_model, analyze_model_task, format_bytes, layer_sizes
    from gbs_core.cluster import map_tasks

    budget = settings["memory_budget"]
    for lm in loaded:
        chosen = layers or lm.default_layers()
        need = sum(layer_sizes(lm, data, chosen, pool=settings["pool"]).values()) * len(data) * 4
        where = "in memory" if need <= budget else "over it: the layers that do not fit streamed through disk"
        _say(f"{lm.label}: features of {len(chosen)} layers for {len(data)} images of {data.dataset_id}: "
             f"{format_bytes(need)} (memory budget {format_bytes(budget)}; {where}) on {settings['device']}")
    results: list = [None] * len(loaded)
    todo = []
    for i, lm in enumerate(loaded):
        if client is None:
            results[i] = analyze_model(lm, data, layers, cache=cache, progress=_fraction_printer("analysis"),
                                       **settings)
            continue
        try:
            results[i] = analyze_model(lm, data, layers, cache=cache, require_cached=True, **settings)
        except LookupError:
            todo.append(i)
    if todo:
        remote = {**settings, "scratch_dir": None}  # the worker's own temporary folder
        max_cache = cache.max_bytes if cache is not None else 2 * 1024**3
        done = map_tasks(lambda lm: analyze_model_task(lm, data, layers, max_cache_bytes=max_cache, **remote),
                         [loaded[i] for i in todo], client=client, progress=_fraction_printer("models"),
                         name=lambda lm: lm.label)
        for i, (result, memory) in zip(todo, done, strict=True):
            memory.write_into(cache)
            results[i] = result
    for lm, result in zip(loaded, results, strict=True):
        for note in result.notes:
            _say(f"  {lm.label}: {note}")
    return results


def _write_analysis(out: Path, fs, results, loaded, done, spec, split, threshold, settings: dict, html, t0) -> None:
    """The files of one model's analysis (see ``analyze``)."""
    import pandas as pd

    from gbs_core.analysis import data_warnings, modularity_table
    from gbs_core.graphs import knn_method_used

    curve, motifs, matrices = results
    for text in data_warnings(fs):
        _say(f"warning: {text}")
    table = modularity_table(curve, threshold=threshold)
    label = fs.name
    _write_csv(out / "modularity.csv", table)
    flagged = table[table["prunable"]]
    _write_json(out / "prunable.json", {"threshold": threshold, "layers": [
        {"position": int(r.depth), "layer": r.layer, "q": float(r.q), "dq": float(r.dq), "kind": r.kind}
        for r in flagged.itertuples()]})
    for m, M in matrices.items():
        _write_csv(out / f"similarity_{m}.csv", pd.DataFrame(M, index=fs.layers, columns=fs.layers).reset_index(
            names="layer"))
    _write_csv(out / "motifs.csv", motifs)
    accuracy = float((fs.predictions == fs.labels).mean()) if fs.predictions is not None else None
    k, motif_k, seed = settings["k"], settings["motif_k"], settings["seed"]
    summary = {"model": label, "model_id": fs.model_id, "test_accuracy": getattr(loaded, "test_accuracy", None),
               "accuracy_on_data": accuracy, "n_params": getattr(loaded, "n_params", None),
               "input_adapter": getattr(loaded, "adapter", ""), "notes": list(getattr(loaded, "notes", ())),
               "data_source": spec.text, "data": fs.dataset_id, "n_samples": fs.n_samples, "split": split,
               "pool": settings["pool"], "layers": fs.layers, "k": k, "n_batches": settings["n_batches"],
               "threshold": threshold, "motif_k": motif_k, "metrics": list(settings["metrics"]),
               "prunable_layers": list(flagged["layer"]), "device": settings["device"],
               "knn_search": knn_method_used(fs.n_samples, settings["knn_method"]),
               "memory": _memory_summary(done), "seconds": round(time.perf_counter() - t0, 2)}
    _write_json(out / "summary.json", summary)
    if html:
        from gbs_core import figures

        figs = {}
        # the dashboard's own figures, so a batch job's HTML looks like the app
        figs["modularity"] = figures.modularity_chart([table.assign(model=label)], normalized=False).update_layout(
            title_text=f"Modularity: {label}")
        for m, M in matrices.items():
            figs[f"similarity_{m}"] = (figures.similarity_heatmap(
                M, fs.layers, fs.layers, title=f"{figures.metric_title(m)}: {label}", row_title="layer",
                col_title="layer"))
        figs["motifs"] = figures.motif_bars(motifs, title=f"Triangle motifs: {label}")
        _write_figures(out, figs, html, title=f"Analysis of {label}", model=label, data=spec.text, n=fs.n_samples,
                       seed=seed, k=k)
    click.echo(f"{label}: {len(fs.layers)} layers; prunable (dQ < {threshold}): "
               f"{', '.join(flagged['layer']) or 'none'}")


def _memory_summary(done) -> dict | None:
    """How ``analyze`` held the features: budget, size, groups (None for saved activations)."""
    if done is None:
        return None
    return {"budget_bytes": done.budget, "feature_bytes": done.feature_bytes, "bounded": done.bounded,
            "groups": [{"layers": list(g.layers), "bytes": g.bytes, "streamed": g.streamed} for g in done.groups]}


def _saved_feature_set(path: str, layers: list[str] | None):
    from gbs_core.activations import load_saved_activations
    from gbs_core.analysis import feature_set_from_arrays

    try:
        features, labels, predictions, class_names = load_saved_activations(path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if layers:
        missing = [n for n in layers if n not in features]
        if missing:
            raise click.BadParameter(f"{missing} not in {Path(path).name}; it has {list(features)}",
                                     param_hint="--layers")
        features = {n: features[n] for n in layers}
    return feature_set_from_arrays(Path(path).name, features, labels, predictions=predictions,
                                   class_names=class_names)


def _threshold(value: str) -> float | str:
    if value == "median":
        return value
    try:
        number = float(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is neither a number nor 'median'", param_hint="--threshold") from exc
    if number != number or number in (float("inf"), float("-inf")):
        raise click.BadParameter(f"{value!r} is not a finite number", param_hint="--threshold")
    return number


@main.command()
@click.argument("model")
@out_option
@click.option("--criterion", type=click.Choice(["modularity", "gbs"]), default="modularity", show_default=True,
              help="modularity: flag layers whose gain dQ is below the threshold; gbs: flag layers whose dense GBS "
                   "similarity to the previous layer is above it.")
@click.option("--threshold", default=None,
              help="A number or 'median' (flags about half the layers). Default: 0.03 for modularity (the paper's "
                   "rule), median for gbs.")
@click.option("--epochs", type=EPOCHS, default=10, show_default=True, help="Fine-tuning epochs (0: no fine-tuning).")
@click.option("--lr", type=LEARNING_RATE, default=0.01, show_default=True, help="Fine-tuning learning rate (cosine schedule).")
@click.option("--batch-size", type=COUNT, default=128, show_default=True)
@click.option("--finetune-seed", type=SEED, default=0, show_default=True)
@click.option("--control-seeds", default="0,1,2", show_default=True,
              help="Comma-separated seeds, one control model each; '' for none.")
@click.option("--curve-samples", type=COUNT, default=500, show_default=True,
              help="Samples of the modularity curve that selects the layers.")
@click.option("--curve-split", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="Split the curve is computed on (train keeps the test split for accuracy only).")
@click.option("--k", type=COUNT, default=3, show_default=True)
@click.option("--n-batches", type=COUNT, default=1, show_default=True)
@click.option("--train-samples", type=COUNT, default=None, help="Fine-tune on a stratified subsample (default: all).")
@model_data_option
@adapter_options
@html_option
@click.pass_context
def prune(ctx, model, out, criterion, threshold, epochs, lr, batch_size, finetune_seed, control_seeds, curve_samples, curve_split,
          k, n_batches, train_samples, data_text, html):
    """Modularity- or GBS-guided pruning of MODEL: remove the flagged removable units, fine-tune, evaluate, and compare
    with controls that remove as many unflagged units. Writes pruning.csv (one row per model), units.csv (every unit:
    Q and dQ or GBS to the previous layer, flagged, removable, reason), pruning.json (everything, with the fine-tuning
    history) (and pruning.html). DATA needs a training split: the bundled sources, CIFAR, or an image folder (split
    70/30, seeded). A head that does not predict DATA's classes is replaced by a fresh one before fine-tuning."""
    from gbs_core.data import DataError
    from gbs_core.experiments.pruning import DEFAULT_THRESHOLDS, experiment_data, pruning_curve, run_pruning

    thr = _threshold(threshold if threshold is not None else str(DEFAULT_THRESHOLDS[criterion]))
    seeds = _int_list(control_seeds, "--control-seeds")
    try:
        pdata = experiment_data(_data_spec(data_text, model), curve_samples=curve_samples,
                                train_samples=train_samples, seed=finetune_seed)
    except DataError as exc:
        raise click.ClickException(str(exc)) from exc
    train, test = pdata.train, pdata.test
    loaded = _load(model, test)
    cache = _cache(ctx)
    net, head_note = loaded.trainable_for(test, seed=finetune_seed)
    if head_note:
        _say(f"  {loaded.label}: {head_note}")
    curve_data = pdata.curve if curve_split == "train" else (
        test.subsample(curve_samples, seed=0) if curve_samples < len(test) else test)
    out.mkdir(parents=True, exist_ok=True)
    _say(f"{loaded.label}: {criterion} curve on {len(curve_data)} images of {curve_data.dataset_id}")
    try:
        curve = pruning_curve(loaded, curve_data, k=k, n_batches=n_batches, cache=cache, criterion=criterion)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    cfg = pdata.finetune_config(epochs, lr, batch_size=batch_size, seed=finetune_seed)

    def report(p) -> None:
        _say(f"  [{100 * p.fraction:5.1f}%] {p.message}")

    result = run_pruning(net, curve, train, test, threshold=thr, finetune=cfg, control_seeds=seeds,
                         model_id=loaded.model_id + ("|new-head" if head_note else ""), model_label=loaded.label, cache=cache, progress=report,
                         criterion=criterion, device=_root_device(ctx),
                         extra_settings={"curve_split": curve_split, "curve_samples": len(curve_data), "k": k,
                                         "n_batches": n_batches, "curve_data": curve_data.dataset_id})
    _write_csv(out / "pruning.csv", result.table())
    _write_csv(out / "units.csv", result.units_table())
    _write_json(out / "pruning.json", result.to_dict())
    if html:
        from gbs_core import figures

        figs = {}
        figs["pruning"] = figures.pruning_figure(result.table(), title=f"Pruning: {loaded.label}")
        _write_figures(out, figs, html, title=f"Pruning of {loaded.label}", model=loaded.label,
                       threshold=result.plan.threshold, epochs=epochs)
    plan = result.plan
    click.echo(f"{loaded.label}: threshold {plan.threshold:.4g}; flagged {len(plan.flagged)} units, removable "
               f"{len(plan.to_remove)}; control pool {len(plan.control_pool)}")
    if not plan.to_remove and not plan.control_pool:
        click.echo(f"  {loaded.label} has no removable unit among its analysed layers: every one changes the shape of "
                   "what flows through it, so nothing can be cut out without retraining")
    for u in plan.not_removable_flagged:
        click.echo(f"  flagged but kept: {u.name} ({u.reason})")
    click.echo(result.table().drop(columns=["removed"]).to_string(index=False))


@main.command("sanity-check")
@out_option
@click.option("--models", default=None,
              help="Comma-separated models of one architecture: zoo names, torchvision:NAME:SEED, timm:NAME:SEED or "
                   "checkpoint:ARCH:PATH (default: every seed of --family).")
@click.option("--family", default="tiny10", show_default=True,
              help="Architecture whose seeds are compared when --models is not given: tiny10, tiny10x2 or tiny10x4 "
                   "(the width family), or any zoo architecture with several seeds.")
@click.option("--n-samples", type=COUNT, default=500, show_default=True,
              help="Held-out images (all there are when the data has fewer).")
@model_data_option
@adapter_options
@click.option("--pool", is_flag=True, help="Average-pool conv maps over space.")
@click.option("--layers", "layer_list", default=None, help="Comma-separated layers (default: the conv blocks).")
@click.option("--metrics", default=None, help="Comma-separated indices (default: all 12; see gbs_core.experiments.sanity).")
@click.option("--heatmap", default="0,1", show_default=True, help="Pair of model positions for the heatmap files.")
@scheduler_options
@html_option
@click.pass_context
def sanity_check(ctx, out, models, family, n_samples, data_text, pool, layer_list, metrics, heatmap, html, client):
    """Layer-identification sanity check: for every ordered pair of seeds and every layer, does the index pick the
    same layer of the other network? Writes sanity.csv (our accuracy beside the CKA paper's), sanity_per_layer.csv,
    sanity_pairs.csv, heatmap_<index>.csv for the chosen pair, sanity.json (and heatmap_<index>.html)."""
    from gbs_core.experiments.sanity import run_zoo_sanity_check, zoo_seed_models

    try:
        a, b = (int(x) for x in heatmap.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"{heatmap!r}: write two model positions, e.g. 0,1", param_hint="--heatmap") from exc
    out.mkdir(parents=True, exist_ok=True)
    try:
        names = _csv_list(models) or zoo_seed_models(family)
        if not models and len(names) < 2:
            from gbs_core.zoo.registry import ARCHITECTURES

            families = [a for a in ARCHITECTURES if len(zoo_seed_models(a)) >= 2]
            raise click.BadParameter(f"{family!r} has {len(names)} seeds in the zoo and the sanity check needs at least "
                                     f"2; families with several seeds: {', '.join(families)}", param_hint="--family")
        specs = [parse_model_spec(n) for n in names]
        data = _analysis_data(_data_spec(data_text, names[0] if specs[0].source == "zoo" else None), n_samples, 0)
        _say(f"{len(specs)} models on {len(data)} images of {data.dataset_id}")
        result = run_zoo_sanity_check(specs, n_samples=n_samples, pool=pool, layers=_csv_list(layer_list),
                                      metrics=_csv_list(metrics), data=data, cache=_cache(ctx),
                                      progress=_fraction_printer("sanity check"),
                                      load=lambda spec: _load_spec(spec, data, ctx), client=client)
    except (KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from exc
    if not (0 <= a < len(result.models) and 0 <= b < len(result.models) and a != b):
        raise click.BadParameter(f"positions must differ and lie in 0..{len(result.models) - 1}", param_hint="--heatmap")
    import pandas as pd

    _write_csv(out / "sanity.csv", result.table())
    _write_csv(out / "sanity_per_layer.csv", result.per_layer_table().reset_index(names="index"))
    _write_csv(out / "sanity_pairs.csv", result.pairs_table())
    figs = {}
    for key in result.accuracy:
        S, pred, ok = result.pair_heatmap(key, a, b)
        df = pd.DataFrame(S, index=result.layers, columns=result.layers).reset_index(names="layer")
        df["argmax"] = [result.layers[p] for p in pred]
        df["correct"] = ok
        _write_csv(out / f"heatmap_{key}.csv", df)
        if html:
            from gbs_core import figures

            figs[f"heatmap_{key}"] = figures.identification_heatmap(
                S, result.layers, pred, title=f"{key}: {result.models[a]} (rows) vs {result.models[b]} (columns)")
    _write_figures(out, figs, html, title="Sanity check", models=result.models, n=result.settings.get("n_samples"),
                   data=result.settings.get("data"))
    _write_json(out / "sanity.json", result.to_dict())
    click.echo(result.table()[["index", "ours_pct", "paper_pct"]].to_string(index=False))


@main.command()
@click.argument("model")
@out_option
@click.option("--files", default=None,
              help="Comma-separated state_dict files of architecture MODEL, in training order (default: the zoo's "
                   "saved epochs of zoo model MODEL).")
@click.option("--epochs", "epoch_list", default=None,
              help="Comma-separated epochs of --files (default: the number after 'ep' in each name, else 0, 1, ...).")
@model_data_option
@adapter_options
@click.option("--n-samples", type=COUNT, default=500, show_default=True, help="Held-out images (stratified subsample).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the subsample and the batches.")
@click.option("--layers", "layer_list", default=None, help="Comma-separated layer names (default: the model's).")
@click.option("--pool", is_flag=True, help="Average-pool conv maps over space.")
@click.option("--k", type=COUNT, default=3, show_default=True, help="Neighbours of the modularity kNN graph.")
@click.option("--n-batches", type=COUNT, default=1, show_default=True, help="Disjoint batches for the modularity curve.")
@click.option("--motif-k", type=COUNT, default=5, show_default=True, help="Neighbours of the motif kNN graph.")
@scheduler_options
@html_option
@click.pass_context
def dynamics(ctx, model, out, files, epoch_list, data_text, n_samples, seed, layer_list, pool, k, n_batches, motif_k,
             html, client):
    """Per-layer modularity, same-class motif fraction and linear CKA to the last checkpoint over MODEL's training
    checkpoints. Writes dynamics.csv (one row per checkpoint and layer), dynamics_q.csv (checkpoint x layer),
    dynamics_change.csv (first vs last checkpoint per layer), layer_difference.csv (|Q_i - Q_j| of the last
    checkpoint), dynamics.json (and dynamics_q.html, dynamics_curves.html, layer_difference.html with --html)."""
    from gbs_core.experiments.dynamics import files_dynamics_plan, run_dynamics, zoo_dynamics_plan
    from gbs_core.metrics.modularity import modularity_difference

    out.mkdir(parents=True, exist_ok=True)
    try:
        if files:
            epochs = _int_list(epoch_list, "--epochs") if epoch_list else None
            plan = files_dynamics_plan(model, _csv_list(files), epochs)
        else:
            plan = zoo_dynamics_plan(model)
        data = _analysis_data(_data_spec(data_text, None if files else model), n_samples, seed)
        _say(f"{plan.name}: {len(plan.checkpoints)} checkpoints on {len(data)} images of {data.dataset_id}")
        result = run_dynamics(plan, data, layers=_csv_list(layer_list), pool=pool, k=k, n_batches=n_batches,
                              motif_k=motif_k, seed=seed, cache=_cache(ctx), progress=_fraction_printer("dynamics"),
                              load=lambda spec: _load_spec(spec, data, ctx), client=client)
    except (KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from exc
    import pandas as pd

    _write_csv(out / "dynamics.csv", result.table())
    q = pd.DataFrame(result.matrix("q"), columns=result.layers)
    q.insert(0, "accuracy", result.accuracy)
    q.insert(0, "epoch", result.epochs)
    q.insert(0, "checkpoint", result.checkpoints)
    _write_csv(out / "dynamics_q.csv", q)
    _write_csv(out / "dynamics_change.csv", result.change_table())
    diff = modularity_difference(result.matrix("q")[-1])
    _write_csv(out / "layer_difference.csv", pd.DataFrame(diff, index=result.layers, columns=result.layers)
               .reset_index(names="layer"))
    _write_json(out / "dynamics.json", result.to_dict())
    if html:
        from gbs_core import figures

        figs = {}
        figs["dynamics_q"] = (figures.dynamics_heatmap(
            result.matrix("q"), result.checkpoints, result.accuracy, result.layers,
            title=f"Modularity over training: {plan.name}", metric_label="Q"))
        figs["dynamics_curves"] = (figures.dynamics_curves(result.table(), result.checkpoints))
        figs["layer_difference"] = (figures.layer_difference_heatmap(
            diff, result.layers, title=f"|Q_i - Q_j|: {result.checkpoints[-1]} of {plan.name}"))
        _write_figures(out, figs, html, title=f"Training dynamics of {plan.name}", model=plan.name, n=n_samples,
                       seed=seed, k=k)
    change = result.change_table()
    click.echo(f"{plan.name}: accuracy {100 * result.accuracy[0]:.1f}% -> {100 * result.accuracy[-1]:.1f}% over "
               f"{len(plan.checkpoints)} checkpoints")
    click.echo(change[["layer", "q_first", "q_last", "q_change"]].round(3).to_string(index=False))


@main.command()
@click.argument("model")
@out_option
@click.option("--attacks", default="fgsm:0.03,fgsm:0.1,pgd:0.03,pgd:0.1", show_default=True,
              help="Comma-separated KIND[:STRENGTH]: fgsm:EPS, pgd:EPS (L-inf on [0, 1] images), cw[:CONFIDENCE] "
                   "(Carlini-Wagner L2), one-pixel[:PIXELS].")
@model_data_option
@adapter_options
@click.option("--n-samples", type=COUNT, default=200, show_default=True, help="Held-out images (stratified subsample).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the subsample and the attacks.")
@click.option("--layers", "layer_list", default=None, help="Comma-separated layer names (default: the model's).")
@click.option("--pool", is_flag=True, help="Average-pool conv maps over space.")
@click.option("--k", type=COUNT, default=3, show_default=True, help="Neighbours of the modularity kNN graph.")
@click.option("--n-batches", type=COUNT, default=1, show_default=True, help="Disjoint batches for the modularity curve.")
@html_option
@click.pass_context
def adversarial(ctx, model, out, attacks, data_text, n_samples, seed, layer_list, pool, k, n_batches, html):
    """Modularity curves of MODEL on clean held-out images and on attacked copies, with the accuracy on each.
    Writes adversarial.csv (one row per input set: accuracy, mean L-inf, Q per layer), adversarial_curves.csv,
    layer_difference.csv (|Q_i - Q_j| of the clean curve), adversarial.json (and adversarial.html,
    layer_difference.html with --html)."""
    from gbs_core.experiments.adversarial import parse_attack, run_adversarial

    out.mkdir(parents=True, exist_ok=True)
    data = _analysis_data(_data_spec(data_text, model), n_samples, seed)
    loaded = _load(model, data)
    if not loaded.head_fits(data):
        raise click.ClickException(f"{loaded.label} does not classify this data's {data.n_classes} classes (its head has "
                                   f"{loaded.head_classes}), and an attack needs the model's loss on the true labels: "
                                   "give a model trained on this data, or other --data")
    try:
        specs = [parse_attack(a) for a in _csv_list(attacks) or []]
        _say(f"{loaded.label}: {len(specs)} attacks on {len(data)} images of {data.dataset_id}")
        result = run_adversarial(loaded, data, specs, layers=_csv_list(layer_list), pool=pool, k=k,
                                 n_batches=n_batches, seed=seed, cache=_cache(ctx), device=_root_device(ctx),
                                 progress=_fraction_printer("adversarial"))
    except (KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from exc
    import pandas as pd

    _write_csv(out / "adversarial.csv", result.table())
    _write_csv(out / "adversarial_curves.csv", result.curves_table())
    _write_csv(out / "layer_difference.csv", pd.DataFrame(result.difference(0), index=result.layers,
                                                          columns=result.layers).reset_index(names="layer"))
    _write_json(out / "adversarial.json", result.to_dict())
    if html:
        from gbs_core import figures

        figs = {}
        figs["adversarial"] = (figures.adversarial_curves(
            result.curves_table(), title=f"Modularity of clean and attacked inputs: {loaded.label}"))
        figs["layer_difference"] = (figures.layer_difference_heatmap(
            result.difference(0), result.layers, title=f"|Q_i - Q_j| of the clean curve: {loaded.label}"))
        _write_figures(out, figs, html, title=f"Adversarial inputs to {loaded.label}", model=loaded.label,
                       n=n_samples, seed=seed, k=k)
    click.echo(result.table()[["attack", "accuracy", "mean_linf"]].round(3).to_string(index=False))


def _stitch_pairs(text: str, layers_a: list[str], layers_b: list[str]) -> list[tuple[str, str]]:
    if text == "matched":
        return [(layers_a[i], layers_b[i]) for i in range(min(len(layers_a), len(layers_b)))]
    if text == "all":
        return [(la, lb) for la in layers_a for lb in layers_b]
    pairs = []
    for item in _csv_list(text) or []:
        la, sep, lb = item.partition(":")
        if not sep:
            raise click.BadParameter(f"{item!r}: write LAYER_A:LAYER_B, or 'matched' or 'all'", param_hint="--pairs")
        pairs.append((la, lb))
    return pairs


@main.command()
@click.argument("model_a")
@click.argument("model_b")
@out_option
@click.option("--pairs", "pairs_text", default="matched", show_default=True,
              help="'matched' (layer i of A into layer i of B), 'all' (every layer of A x every layer of B), or "
                   "comma-separated LAYER_A:LAYER_B.")
@click.option("--epochs", type=EPOCHS, default=1, show_default=True,
              help="SGD epochs of each stitch after its least-squares start (0: the closed-form stitch only).")
@click.option("--lr", type=LEARNING_RATE, default=0.005, show_default=True, help="Learning rate of the stitch.")
@click.option("--train-samples", type=COUNT, default=None, help="Train each stitch on a stratified subsample.")
@click.option("--index-samples", type=COUNT, default=500, show_default=True,
              help="Held-out images for the motif, CKA and GBS indices.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@model_data_option
@adapter_options
@html_option
@click.pass_context
def stitch(ctx, model_a, model_b, out, pairs_text, epochs, lr, train_samples, index_samples, seed, data_text, html):
    """Stitch MODEL_A's layers into MODEL_B (frozen halves, a trained 1x1-conv or linear stitch with ReLU) and test
    whether the motif statistic, CKA or GBS predicts the stitched accuracy. Trains on the training split of DATA
    (default: MODEL_A's training data), tests on its held-out split; MODEL_B's head must classify DATA. Writes stitching.csv (one row per pair), stitching_matrix.csv,
    correlations.csv (Spearman rho, p, N per index), stitching.json (and stitching.html, stitching_<index>.html)."""
    from gbs_core.data import DataError
    from gbs_core.experiments.pruning import experiment_data
    from gbs_core.experiments.stitching import STITCH_INDICES, run_stitching

    try:
        pdata = experiment_data(_data_spec(data_text, model_a), curve_samples=None, train_samples=train_samples,
                                seed=seed)
    except DataError as exc:
        raise click.ClickException(str(exc)) from exc
    a, b = _load(model_a, pdata.test), _load(model_b, pdata.test)
    if not b.head_fits(pdata.test):
        raise click.ClickException(f"{b.label}'s head does not classify this data's {pdata.test.n_classes} classes, and "
                                   "stitching measures accuracy through MODEL_B's head: give a MODEL_B trained on "
                                   "this data")
    out.mkdir(parents=True, exist_ok=True)
    try:
        pairs = _stitch_pairs(pairs_text, a.default_layers(), b.default_layers())
        _say(f"{a.label} -> {b.label}: {len(pairs)} pairs, {epochs} epoch(s) each on {len(pdata.train)} images")
        result = run_stitching(a, b, pdata.train, pdata.test, pairs=pairs, init=pdata.curve,
                               config=pdata.finetune_config(epochs, lr, weight_decay=0.0, seed=seed),
                               index_samples=index_samples, seed=seed, cache=_cache(ctx), device=_root_device(ctx),
                               progress=_fraction_printer("stitching"))
    except (KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from exc
    import pandas as pd

    pairs_table, corr = result.pairs_table(), result.correlations()
    if pairs_table.empty:
        raise click.ClickException(f"no pair of layers could be stitched: a vector layer of {a.label} cannot feed a "
                                   f"conv map of {b.label}; pick other --pairs or other models")
    _write_csv(out / "stitching.csv", pairs_table)
    _write_csv(out / "stitching_matrix.csv", pd.DataFrame(result.accuracy, index=result.layers_a,
                                                          columns=result.layers_b).reset_index(names="layer_a"))
    _write_csv(out / "correlations.csv", corr)
    _write_json(out / "stitching.json", {**result.to_dict(), "correlations": corr.to_dict(orient="records")})
    if html:
        from gbs_core import figures

        figs = {}
        figs["stitching"] = (figures.stitching_heatmap(
            result.accuracy, result.layers_a, result.layers_b, title=f"Stitched accuracy: {a.label} -> {b.label}",
            model_a=a.label, model_b=b.label))
        for row in corr.itertuples():
            figs[f"stitching_{row.index}"] = (figures.stitching_scatter(
                pairs_table, row.index, index_label=STITCH_INDICES[row.index], rho=row.rho,
                title=f"{a.label} -> {b.label}"))
        _write_figures(out, figs, html, title=f"Stitching {a.label} into {b.label}", models=[a.label, b.label],
                       seed=seed)
    click.echo(f"{a.label} {100 * result.accuracy_a:.1f}%, {b.label} {100 * result.accuracy_b:.1f}%; stitched "
               f"accuracy over {len(pairs_table)} pairs: {100 * pairs_table['stitched_accuracy'].min():.1f}% to "
               f"{100 * pairs_table['stitched_accuracy'].max():.1f}%")
    click.echo(corr[["index", "rho", "p", "n"]].round(4).to_string(index=False))


def _transfer_target(data_text: str | None, target: str, folder: Path | None, seed: int):
    """(train, test, name) of the transfer target: ``--data`` (any source with a training split), else the older
    ``--target`` / ``--folder``."""
    from gbs_core.data import DataError
    from gbs_core.sources import DataSpec, train_test

    if data_text is not None:
        spec = _data_spec(data_text)
    elif target == "image-folder":
        if folder is None:
            raise click.BadParameter("--target image-folder needs --folder PATH", param_hint="--folder")
        spec = DataSpec("folder", str(folder))
    else:
        spec = DataSpec(target)
    try:
        train, test = train_test(spec, seed=seed)
    except DataError as exc:
        raise click.ClickException(str(exc)) from exc
    return train, test, Path(spec.path).name if spec.path else spec.kind


@main.command()
@out_option
@click.option("--data", "data_text", default=None, metavar="DATA",
              help="The target task: digits, digits-noise, folder:PATH (split 70/30, seeded), cifar10:PATH or "
                   "cifar100:PATH (their own splits). Default: --target.")
@click.option("--target", type=click.Choice(["digits", "digits-noise", "image-folder"]), default="digits",
              show_default=True, help="Older spelling of --data: a bundled data set, or image-folder with --folder.")
@click.option("--folder", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="With --target image-folder: one sub-folder per class; split 70/30.")
@adapter_options
@click.option("--sources", default=None,
              help="Comma-separated source models (default: the zoo's nets of both data sets and three random inits).")
@click.option("--finetune-epochs", type=EPOCHS, default=2, show_default=True,
              help="Epochs of the fine-tune that gives the second truth (0: probe only).")
@click.option("--lr", type=LEARNING_RATE, default=0.01, show_default=True, help="Fine-tuning learning rate.")
@click.option("--score-samples", type=COUNT, default=500, show_default=True,
              help="Target training images the training-free scores are computed on.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the folder's split and the fine-tune.")
@html_option
@click.pass_context
def transfer(ctx, out, data_text, target, folder, sources, finetune_epochs, lr, score_samples, seed, html):
    """Rank source models for a target task by training-free scores of their penultimate features (GBS to the label
    graph, same-class motif fraction, modularity, linear CKA to the labels) and compare with a linear probe and a
    short fine-tune. Writes transfer.csv (one row per source), correlations.csv (Kendall's tau per score and
    truth), transfer.json (and transfer.html)."""
    from gbs_core.experiments.transfer import default_sources, run_transfer
    from gbs_core.zoo.train import TrainConfig

    out.mkdir(parents=True, exist_ok=True)
    try:
        train, test, name = _transfer_target(data_text, target, folder, seed)
        loaded = [_load(s, test) for s in (_csv_list(sources) or default_sources())]
        _say(f"{len(loaded)} sources -> {name}: {len(train)} training and {len(test)} held-out images")
        result = run_transfer(loaded, train, test, target_name=name, score_samples=score_samples,
                              finetune=TrainConfig(epochs=finetune_epochs, lr=lr, seed=seed), cache=_cache(ctx),
                              device=_root_device(ctx), progress=_fraction_printer("transfer"))
    except (KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from exc
    corr = result.correlations()
    _write_csv(out / "transfer.csv", result.table())
    _write_csv(out / "correlations.csv", corr)
    _write_json(out / "transfer.json", {**result.to_dict(), "correlations": corr.to_dict(orient="records")})
    if html:
        from gbs_core import figures

        figs = {}
        figs["transfer"] = figures.transfer_figure(result.table(), title=f"Transfer to {name}")
        _write_figures(out, figs, html, title=f"Transfer to {name}", data=name, seed=seed)
    click.echo(result.table().round(3).to_string(index=False))
    click.echo(corr[["score", "truth", "tau", "p", "n"]].round(3).to_string(index=False))


def _results_in(folders: tuple[Path, ...]):
    """The pruning and sanity-check results that ``prune`` / ``sanity-check`` wrote into ``folders``."""
    from gbs_core.experiments.pruning import PruningResult
    from gbs_core.experiments.sanity import SanityResult

    pruning, sanity = [], None
    for folder in folders:
        found = False
        for name, kind in (("pruning.json", "pruning"), ("sanity.json", "sanity")):
            path = folder / name
            if not path.is_file():
                continue
            found = True
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
                if kind == "pruning":
                    pruning.append(PruningResult.from_dict(d))
                else:
                    sanity = SanityResult.from_dict(d)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise click.BadParameter(f"{path} is not a {kind} result written by this tool ({exc})",
                                         param_hint="--results") from None
        if not found:
            raise click.BadParameter(f"{folder} holds neither pruning.json nor sanity.json (the --out folder of "
                                     "`prune` or `sanity-check`)", param_hint="--results")
    return pruning, sanity


@main.command()
@click.argument("models", nargs=-1)
@out_option
@data_option
@adapter_options
@analysis_options
@click.option("--sections", default="modularity,similarity,motifs,graphs,pruning,sanity", show_default=True,
              help="Comma-separated sections of the report, in this order.")
@click.option("--graph-layers", default=None, help="Comma-separated layers whose sample graphs are drawn (default: "
              "the first, middle and last of each model).")
@click.option("--max-nodes", type=COUNT, default=500, show_default=True, help="Samples drawn per sample graph.")
@click.option("--results", "results", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="An --out folder of `prune` or `sanity-check` whose results go into the report (repeatable).")
@click.option("--pdf", is_flag=True, help="Also print the report to report.pdf through the machine's Chromium.")
@click.pass_context
def report(ctx, models, out, data_text, n_samples, seed, layer_list, pool, k, n_batches, threshold, motif_k, metrics,
           sections, graph_layers, max_nodes, results, pdf):
    """One self-contained HTML report (report.html in --out) of MODELS on DATA, as the dashboard's Report page makes
    it: settings, versions, modularity, similarity heatmaps, motifs, sample graphs, and the pruning and sanity-check
    results of --results folders. With --data npz:PATH the saved activations are reported (no MODELS)."""
    from gbs_core import export
    from gbs_core.analysis import data_warnings, feature_set
    from gbs_core.report import SECTIONS, ReportModel, ReportSettings, accuracy_on, report_html

    metric_list = _metric_list(metrics)
    section_list = _csv_list(sections) or []
    bad = [x for x in section_list if x not in SECTIONS]
    if bad or not section_list:
        raise click.BadParameter(f"unknown section(s) {bad}; choose from {', '.join(SECTIONS)}",
                                 param_hint="--sections")
    pruning, sanity = _results_in(tuple(results))
    spec = _data_spec(data_text)
    cache = _cache(ctx)
    if spec.kind == "npz":
        fs_list = [_saved_feature_set(spec.path, _csv_list(layer_list))]
        if models:
            _say(f"  --data npz: the saved activations are reported; MODELS {', '.join(models)} are not used")
        notes = [()]
    else:
        if not models:
            raise click.UsageError("give one or more MODELS (or --data npz:PATH to report saved activations)")
        data = _analysis_data(spec, n_samples, seed)
        fs_list, notes = [], []
        for text in models:
            loaded = _load(text, data, ctx)
            _say(f"{loaded.label}: features of {len(data)} images of {data.dataset_id}")
            fs_list.append(feature_set(loaded, data, _csv_list(layer_list), pool=pool, cache=cache))
            notes.append(tuple(loaded.notes))
    for fs in fs_list:
        for text in data_warnings(fs):
            _say(f"warning: {text}")
    settings = ReportSettings(data=spec.text, n_samples=fs_list[0].n_samples, seed=seed, k=k, motif_k=motif_k,
                              n_batches=n_batches, threshold=threshold, pool=pool, metrics=tuple(metric_list),
                              graph_layers=tuple(_csv_list(graph_layers) or ()), max_nodes=max_nodes,
                              sections=tuple(section_list))
    entries = [ReportModel(fs, accuracy_on(fs), f"these {fs.n_samples} samples", note)
               for fs, note in zip(fs_list, notes, strict=True)]
    try:
        page = report_html(entries, settings, cache=cache, pruning=pruning, sanity=sanity,
                           progress=_fraction_printer("report"))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    _written(path)
    if pdf:
        try:
            _written(export.print_pdf(path, out / "report.pdf"))
        except export.ExportError as exc:
            raise click.ClickException(f"{exc} (report.html was written)") from exc
    click.echo(f"report of {', '.join(fs.name for fs in fs_list)}: {path}")


@main.group()
def zoo() -> None:
    """The bundled model zoo: list it, or train models into it."""


@zoo.command("list")
@click.option("--checkpoints", "checkpoints_of", default=None, metavar="MODEL",
              help="List MODEL's training checkpoints (epoch 0 = initialisation) instead of the finished models.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, callback=_writable_folder,
              help="Also write zoo.csv into this folder.")
def zoo_list(checkpoints_of: str | None, out: Path | None) -> None:
    """Print the bundled models with their training data, held-out accuracy and size."""
    from dataclasses import asdict

    import pandas as pd

    from gbs_core.zoo.registry import list_checkpoints, list_zoo

    if checkpoints_of is not None:
        entries = list_checkpoints(checkpoints_of)
        if not entries:
            with_ck = sorted({e.checkpoint_of for e in list_zoo(include_checkpoints=True) if e.checkpoint_of})
            raise click.ClickException(f"no training checkpoints kept for {checkpoints_of!r}; models with "
                                       f"checkpoints: {', '.join(with_ck) or 'none'}")
    else:
        entries = list_zoo()
    for e in entries:
        click.echo(f"{e.name:18s} {e.arch:9s} seed {e.seed}  epoch {e.epoch:3d}  {e.data_label:15s}  "
                   f"acc {e.test_accuracy:.4f}  params {e.n_params:,}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rows = [{**{k: v for k, v in asdict(e).items() if k not in ("extra", "input_shape")},
                 "training_data": e.data_label, "epoch": e.epoch} for e in entries]
        _write_csv(out / "zoo.csv", pd.DataFrame(rows))


_FAMILY_SEEDS = {"tiny10": list(range(10)), "tiny10x2": [0, 1, 2], "tiny10x4": [0, 1, 2]}


@zoo.command("train")
@click.option("--arch", "archs", multiple=True, help="Architecture(s) to train (repeatable; default: all).")
@click.option("--seeds", default=None,
              help="Comma-separated seeds (default: 0-9 for tiny10, 0-2 for tiny10x2/x4, 0 for the others).")
@click.option("--data", "data", type=click.Choice(["digits-noise", "digits"]), default="digits-noise", show_default=True,
              help="Training data: the digits in noise (fresh transform every epoch) or the plain digits.")
@click.option("--epochs", type=EPOCHS, default=None,
              help="Override the epoch count (default: per architecture, see gbs_core.zoo.train.NOISE_EPOCHS).")
@click.option("--checkpoints", default=None,
              help="Comma-separated epochs after which to keep half-precision training checkpoints (0 = init), "
                   "e.g. 0,1,2,4,8,16.")
@click.option("--half/--no-half", default=False, show_default=True,
              help="Store the finished weights in half precision (accuracy is measured on the stored weights).")
@click.option("--threads", type=COUNT, default=2, show_default=True,
              help="CPU threads for training (part of what makes a run reproducible).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, callback=_writable_folder,
              help="Folder for weights and manifest.json (default: the bundled zoo).")
def zoo_train(archs, seeds, data, epochs, checkpoints, half, threads, out) -> None:
    """Train zoo models and record them (training data, accuracy, size, sha256) in the folder's manifest."""
    from gbs_core.zoo.registry import ARCHITECTURES, training_data, training_data_for_source, zoo_dir
    from gbs_core.zoo.train import DEFAULT_EPOCHS, DEFAULT_LR, NOISE_EPOCHS, train_zoo_model

    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise click.BadParameter(f"unknown architecture(s) {unknown}; choose from {', '.join(ARCHITECTURES)}",
                                 param_hint="--arch")
    folder = out or zoo_dir()
    data_key = training_data_for_source(data)
    suffix = training_data(data_key).suffix
    seed_list = _int_list(seeds, "--seeds") if seeds else None
    ck = _int_list(checkpoints, "--checkpoints")
    for arch in archs or list(ARCHITECTURES):
        for seed in seed_list if seed_list is not None else _FAMILY_SEEDS.get(arch, [0]):
            name = (f"{arch}-s{seed}" if arch in _FAMILY_SEEDS else arch) + suffix
            n_epochs = epochs or (NOISE_EPOCHS.get(arch, NOISE_EPOCHS["default"]) if data == "digits-noise"
                                  else DEFAULT_EPOCHS.get(arch, 30))
            entry = train_zoo_model(arch, seed, epochs=n_epochs, out=folder, lr=DEFAULT_LR.get(arch, 0.05), name=name,
                                    data=data_key, checkpoint_epochs=ck, half=half, threads=threads, progress=_say)
            click.echo(f"{entry.name}: held-out accuracy {entry.test_accuracy:.4f}, {entry.n_params:,} parameters")


if __name__ == "__main__":
    sys.exit(main())
