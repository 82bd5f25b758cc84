"""Input samples for the analyses: one interface for every source.

A :class:`Dataset` holds images as a float tensor ``(N, C, H, W)``, integer labels ``(N,)``, the class names, and a
``dataset_id`` that identifies exactly which samples these are (source, split, preprocessing, and for subsamples the
chosen indices), so the disk cache can key results on it.

Sources
-------
- :func:`load_digits`: the 8x8 digits set that ships with scikit-learn (1,797 images, 10 classes), the offline
  default. Pixels are scaled from 0..16 to [0, 1] and upsampled bilinearly to 16 x 16 (one channel); this is the
  preprocessing the bundled zoo was trained with. The split is stratified and fixed (``train_test_split`` with
  ``test_size=0.3``, ``random_state=0``): 1,257 training and 540 held-out images. The analyses use held-out images, as
  the papers analyse N = 500 samples the models never trained on.
- :func:`gbs_core.digits_noise.load_digits_noise`: the **default**, the same digits rotated, scaled, shifted and laid
  over uniform noise (a fixed seeded transform of the held-out split), hard enough that modularity rises over depth.
  :func:`load_bundled` picks either bundled source by name.
- :func:`load_image_folder`: one sub-folder per class of PNG/JPEG/BMP/GIF images.
- :func:`load_cifar`: CIFAR-10 / CIFAR-100 python-pickle folders already on disk, read with a restricted unpickler
  that only builds plain containers and numpy arrays (a pickle that tries to run code is refused).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DataError",
    "Dataset",
    "DIGITS_SIZE",
    "load_digits",
    "load_bundled",
    "bundled_dataset_id",
    "BUNDLED_SOURCES",
    "DEFAULT_SOURCE",
    "load_image_folder",
    "load_cifar",
    "stratified_subsample",
    "SubsampleOrigin",
    "stratified_split",
    "MAX_SAMPLES",
]

DIGITS_SIZE = 16
MAX_SAMPLES = 20_000  # upper bound on samples any one request may load (memory and time guard)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_IMAGE_BYTES = 20 * 1024 * 1024


class DataError(ValueError):
    """Input data is missing or malformed; the message names the path, what was expected and what was found."""


@dataclass(frozen=True)
class SubsampleOrigin:
    """Where a stratified subsample comes from: ``parent_id``'s samples at ``indices`` (sorted), drawn with ``seed``."""

    parent_id: str
    seed: int
    indices: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images, labels and class names of one sample set.

    Attributes
    ----------
    images : torch.Tensor, shape (n_samples, channels, height, width), float32
    labels : numpy.ndarray, shape (n_samples,), int64, values in ``0 .. len(class_names) - 1``
    class_names : tuple of str
    dataset_id : str
        Identifies exactly these samples in this order (used in cache keys).
    origin : SubsampleOrigin or None
        For a stratified subsample: the data set it was drawn from, the seed and the positions drawn (so a smaller N
        of the same seed can reuse what a larger N computed; see :func:`stratified_subsample`).
    """

    images: torch.Tensor
    labels: np.ndarray
    class_names: tuple[str, ...]
    dataset_id: str
    origin: SubsampleOrigin | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"images must have shape (N, C, H, W); got shape {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: np.ndarray, tag: str) -> Dataset:
        """The samples at ``indices`` (in that order); ``tag`` is folded into the id."""
        indices = np.asarray(indices, dtype=np.int64)
        digest = hashlib.sha256(indices.tobytes()).hexdigest()[:16]
        return Dataset(
            images=self.images[torch.from_numpy(indices)],
            labels=self.labels[indices],
            class_names=self.class_names,
            dataset_id=f"{self.dataset_id}/{tag}-{digest}",
        )

    def subsample(self, n: int, seed: int = 0) -> Dataset:
        """A stratified subsample of ``n`` samples; see :func:`stratified_subsample`."""
        return stratified_subsample(self, n, seed=seed)


def _hash_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def stratified_subsample(dataset: Dataset, n: int, seed: int = 0) -> Dataset:
    """Pick ``n`` samples with each class represented in proportion to its size.

    Per class, ``floor(n * n_c / N)`` samples are taken, and the remaining slots go to the classes with the largest
    fractional parts (ties broken by class index). Within a class the samples are the first ones of a seeded
    permutation of the class, the same permutation for every ``n``: so for one seed the samples of a smaller ``n`` lie
    inside those of a larger one (nested) whenever no class's share shrinks, which is every case but the rare
    "Alabama paradox" of largest-remainder shares (a class may then lose one sample). The result is sorted by original
    index, so the same ``n`` and ``seed`` always give the same samples in the same order; it records its
    :class:`SubsampleOrigin`.

    Raises
    ------
    DataError
        If ``n`` is not in ``1 .. len(dataset)``.
    """
    total = len(dataset)
    if not 1 <= n <= total:
        raise DataError(f"asked for {n} samples but the data set has {total}; choose N between 1 and {total}")
    if n == total:
        return dataset
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(dataset.labels, return_counts=True)
    exact = n * counts / total
    take = np.floor(exact).astype(int)
    remainder = n - take.sum()
    order = np.lexsort((classes, -(exact - take)))  # largest fractional part first, then class index
    take[order[:remainder]] += 1
    chosen = []
    for cls, t in zip(classes, take, strict=True):
        # a seeded order of the whole class, whatever n is: a smaller n takes a prefix of it (nested samples)
        chosen.append(rng.permutation(np.flatnonzero(dataset.labels == cls))[:t])
    indices = np.sort(np.concatenate(chosen))
    sub = dataset.subset(indices, tag=f"strat{n}s{seed}")
    return replace(sub, origin=SubsampleOrigin(dataset.dataset_id, int(seed), indices))


def stratified_split(data: Dataset, test_fraction: float = 0.3, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A seeded stratified (train, test) split of a data set without one of its own (an image folder).

    Raises
    ------
    DataError
        When a class has fewer than 2 samples, or the test part would hold fewer samples than there are classes.
    """
    from sklearn.model_selection import train_test_split

    counts = np.bincount(data.labels, minlength=data.n_classes)
    present = counts[counts > 0]
    if present.min() < 2 or round(len(data) * test_fraction) < len(present):
        raise DataError(f"cannot split {len(data)} samples of {len(present)} classes (smallest class: "
                        f"{int(present.min())}) into stratified train and test parts; add images (at least 2 per class "
                        f"and {int(np.ceil(len(present) / test_fraction))} in all)")
    idx = np.arange(len(data))
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=data.labels)
    return data.subset(np.sort(train_idx), f"train{seed}"), data.subset(np.sort(test_idx), f"test{seed}")


# --- digits -----------------------------------------------------------------------------------------------------------

DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def digits_split_indices() -> tuple[np.ndarray, np.ndarray]:
    """Indices of the fixed stratified train and test parts of the 1,797 digits (1,257 and 540)."""
    from sklearn.model_selection import train_test_split

    _, labels = _digits_arrays()
    idx = np.arange(len(labels))
    train, test = train_test_split(
        idx, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels
    )
    return np.sort(train), np.sort(test)


def preprocess_digits(images: np.ndarray, size: int = DIGITS_SIZE) -> torch.Tensor:
    """Scale raw 8x8 digits (0..16) to [0, 1] and upsample bilinearly to ``size`` x ``size``, one channel."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 16.0).unsqueeze(1)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous()


def load_digits(split: Literal["train", "test", "all"] = "test", *, size: int = DIGITS_SIZE) -> Dataset:
    """The scikit-learn digits, preprocessed as the zoo was trained (see the module docstring).

    Parameters
    ----------
    split : {"train", "test", "all"}
        ``"test"`` (540 held-out images, the default for analyses), ``"train"`` (1,257) or ``"all"`` (1,797).
    size : int
        Side of the upsampled square images.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be one of 'train', 'test', 'all'; got {split!r}")
    images, labels = _digits_arrays()
    if split != "all":
        train, test = digits_split_indices()
        idx = train if split == "train" else test
        images, labels = images[idx], labels[idx]
    return Dataset(
        images=preprocess_digits(images, size),
        labels=labels,
        class_names=tuple(str(i) for i in range(10)),
        dataset_id=bundled_dataset_id("digits", split, size=size),
    )


# --- image folders ----------------------------------------------------------------------------------------------------


def _resolve_inside(root: Path, candidate: Path) -> Path:
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise DataError(f"{candidate} points outside the chosen folder {root}; links out of the folder are not followed")
    return resolved


_GREY_MODES = ("1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
MAX_IMAGE_PIXELS = 4096 * 4096  # one image's pixels: larger is refused before decoding (decompression bombs)
MAX_FOLDER_BYTES = 2 * 1024**3  # all of a folder's images as float32


def _open_image(f: Path):
    """``Image.open`` of one file, lazily (no pixels read) and with the project's own errors: unreadable files and
    images over ``MAX_IMAGE_PIXELS`` (a small file can declare a huge image) become DataError."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(f)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{f} declares more pixels than any image this tool reads ({exc}); the limit is "
                        f"{MAX_IMAGE_PIXELS:,} pixels per image") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {f}: {exc}") from exc
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise DataError(f"{f} is {w}x{h} pixels; images over {MAX_IMAGE_PIXELS:,} pixels are refused (resize them "
                        "first)")
    return im


def _pixels(im, channels: int, f: Path) -> np.ndarray:
    """The image as float32 (channels, H, W) in [0, 1], read at its real bit depth: 16-bit grey is divided by
    65535 (not saturated by an 8-bit conversion), 32-bit integer grey must hold 16-bit values, float grey must lie
    in [0, 1]."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode == "F":
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                raise DataError(f"{f} is a float image with values outside [0, 1]; save it as 8- or 16-bit")
        else:
            if a.min() < 0 or a.max() > 65535:
                raise DataError(f"{f} holds integer pixels outside 0..65535; save it as 8- or 16-bit")
            a = a / 65535.0
        grey = a.astype(np.float32)[None]
        return grey if channels == 1 else np.repeat(grey, 3, axis=0)
    a = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def _resize(a: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a (channels, H, W) float array to ``target`` = (width, height)."""
    x = torch.from_numpy(np.ascontiguousarray(a))[None]
    return F.interpolate(x, size=(target[1], target[0]), mode="bilinear", align_corners=False)[0].numpy()


def load_image_folder(
    path: str | Path,
    *,
    size: int | None = None,
    channels: Literal[1, 3] | None = None,
    max_images: int = MAX_SAMPLES,
) -> Dataset:
    """Images in ``path/<class name>/<image file>``, classes in sorted folder-name order.

    Images are converted to ``channels`` (1 = grey, 3 = RGB; default: grey if every image is grey, else RGB), resized to
    ``size`` x ``size`` (default: the size of the first image; all images must share it when ``size`` is None), and
    scaled to [0, 1]. Symbolic links that lead outside ``path`` are refused.

    Raises
    ------
    DataError
        The folder is missing, has no class sub-folders, a class has no images, an image cannot be read, images differ
        in size and no ``size`` was given, or there are more than ``max_images`` images.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder; expected one sub-folder per class")
    root = root.resolve()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root} has no class sub-folders; expected {root}/<class name>/<image files>")
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(class_dirs):
        _resolve_inside(root, d)
        imgs = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not imgs:
            raise DataError(f"class folder {d} has no images ({', '.join(IMAGE_SUFFIXES)} expected)")
        files.extend((_resolve_inside(root, p), label) for p in imgs)
    if len(files) > max_images:
        raise DataError(f"{root} holds {len(files)} images; the limit is {max_images}. Use a smaller folder.")

    # first the headers only (Pillow reads no pixels on open): sizes, modes and the memory budget, before decoding
    headers = []
    for f, _ in files:
        if f.stat().st_size > MAX_IMAGE_BYTES:
            raise DataError(f"{f} is {f.stat().st_size} bytes; images over {MAX_IMAGE_BYTES} bytes are refused")
        with _open_image(f) as im:
            headers.append((im.size, im.mode))
    if channels is None:
        channels = 1 if all(mode in _GREY_MODES for _, mode in headers) else 3
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}")
    target = (size, size) if size is not None else headers[0][0]
    if size is None:
        for (f, _), (dims, _) in zip(files, headers, strict=True):
            if dims != target:
                raise DataError(
                    f"{f} is {dims[0]}x{dims[1]} but the first image is {target[0]}x{target[1]}; "
                    "pass a size to resize all images"
                )
    needed = len(files) * channels * target[0] * target[1] * 4
    if needed > MAX_FOLDER_BYTES:
        raise DataError(f"{root}: {len(files)} images of {target[0]}x{target[1]} x {channels} channels need "
                        f"{needed >> 20} MiB as float32; the limit is {MAX_FOLDER_BYTES >> 20} MiB. Use fewer or "
                        "smaller images")
    images = np.empty((len(files), channels, target[1], target[0]), dtype=np.float32)
    for i, (f, _) in enumerate(files):
        with _open_image(f) as im:
            try:
                im.load()
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read image {f}: {exc}") from exc
            a = _pixels(im, channels, f)
        if a.shape[1:] != (target[1], target[0]):
            a = _resize(a, target)
        images[i] = a
    labels = np.array([label for _, label in files], dtype=np.int64)
    names = tuple(d.name for d in class_dirs)
    ident = hashlib.sha256(json.dumps([str(f.relative_to(root)) for f, _ in files]).encode()).hexdigest()[:8]
    return Dataset(
        images=torch.from_numpy(images),
        labels=labels,
        class_names=names,
        dataset_id=f"folder-{ident}-{_hash_arrays(images, labels)}",
    )


# --- CIFAR pickles ----------------------------------------------------------------------------------------------------

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds plain containers and numpy arrays only; any other global (os.system, eval, ...) is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"refusing to load {module}.{name}: only plain data is allowed in a CIFAR pickle")


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise DataError(f"{path}: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path} is not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}; a CIFAR pickle holds a dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


_CIFAR_LAYOUT = {
    10: {"meta": "batches.meta", "names": "label_names", "labels": "labels",
         "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    100: {"meta": "meta", "names": "fine_label_names", "labels": "fine_labels", "train": ["train"], "test": ["test"]},
}


def load_cifar(
    path: str | Path,
    *,
    variant: Literal[10, 100] = 10,
    split: Literal["train", "test"] = "test",
    max_images: int = MAX_SAMPLES,
) -> Dataset:
    """CIFAR-10 or CIFAR-100 from the python-pickle folder (``cifar-10-batches-py`` / ``cifar-100-python``).

    Never downloads. Images are returned as RGB 32 x 32 in [0, 1]; at most ``max_images`` (the first ones of the split).

    Raises
    ------
    DataError
        The folder or an expected file is missing, a file is not a CIFAR pickle, or it tries to run code.
    """
    if variant not in _CIFAR_LAYOUT:
        raise ValueError(f"variant must be 10 or 100; got {variant!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    layout = _CIFAR_LAYOUT[variant]
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"CIFAR-{variant} folder {root} does not exist; expected the extracted python version")
    needed = [layout["meta"], *layout[split]]
    missing = [n for n in needed if not (root / n).is_file()]
    if missing:  # the folder's other contents are not listed: a served app must not show a visitor the disk
        raise DataError(f"{root} lacks {', '.join(missing)} for CIFAR-{variant}; give the extracted python version's "
                        f"folder ({'cifar-10-batches-py' if variant == 10 else 'cifar-100-python'})")
    meta = _read_pickle(root / layout["meta"])
    if layout["names"] not in meta:
        raise DataError(f"{root / layout['meta']} has no '{layout['names']}' entry; found keys {sorted(meta)}")
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[layout["names"]])
    data, labels = [], []
    for name in layout[split]:
        batch = _read_pickle(root / name)
        if "data" not in batch or layout["labels"] not in batch:
            raise DataError(f"{root / name} lacks 'data' or '{layout['labels']}'; found keys {sorted(batch)}")
        arr = np.asarray(batch["data"])
        if arr.ndim != 2 or arr.shape[1] != 3072:
            raise DataError(f"{root / name}: 'data' has shape {arr.shape}; expected (n, 3072) uint8 rows")
        data.append(arr)
        labels.append(np.asarray(batch[layout["labels"]], dtype=np.int64))
        if sum(len(d) for d in data) >= max_images:
            break
    rows = np.concatenate(data)[:max_images]
    if rows.dtype.kind not in "iub" or (rows.size and (rows.min() < 0 or rows.max() > 255)):
        raise DataError(f"{root}: CIFAR pixels are bytes 0..255, but 'data' holds {rows.dtype} values from "
                        f"{rows.min()} to {rows.max()}")
    rows = rows.astype(np.uint8)
    x = rows.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    y = np.concatenate(labels)[:max_images]
    if len(y) != len(x):
        raise DataError(f"{root}: {len(x)} images but {len(y)} labels")
    if y.min() < 0 or y.max() >= len(names):
        raise DataError(f"{root}: labels range {y.min()}..{y.max()} but there are {len(names)} class names")
    return Dataset(
        images=torch.from_numpy(x),
        labels=y,
        class_names=names,
        dataset_id=f"cifar{variant}-{split}-{_hash_arrays(rows, y)}-{len(y)}",
    )


# --- the bundled sources by name -------------------------------------------------------------------------------------

BUNDLED_SOURCES = {"digits-noise": "Digits in noise (bundled, default)", "digits": "Plain digits (bundled)"}
DEFAULT_SOURCE = "digits-noise"


def bundled_dataset_id(source: str, split: str = "test", *, size: int = DIGITS_SIZE) -> str:
    """The ``dataset_id`` a bundled source's split gets, known without loading it (e.g. ``"digits-test-16px"``,
    ``"digits-noise-v1-test-16px"``: the noisy source's id names its construction's version)."""
    if source == "digits":
        return f"digits-{split}-{size}px"
    if source == "digits-noise":
        from gbs_core.digits_noise import CONSTRUCTION_VERSION

        return f"digits-noise-v{CONSTRUCTION_VERSION}-{split}-{size}px"
    raise ValueError(f"unknown bundled source {source!r}; choose one of {', '.join(BUNDLED_SOURCES)}")


def load_bundled(source: str = DEFAULT_SOURCE, split: Literal["train", "test", "all"] = "test") -> Dataset:
    """A bundled source by name: ``"digits-noise"`` (the default, see :mod:`gbs_core.digits_noise`) or ``"digits"``."""
    if source == "digits":
        return load_digits(split)
    if source == "digits-noise":
        from gbs_core.digits_noise import load_digits_noise

        return load_digits_noise(split)
    raise ValueError(f"unknown bundled source {source!r}; choose one of {', '.join(BUNDLED_SOURCES)}")
