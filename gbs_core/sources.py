"""Data sources by name, the same for the dashboard and the command line.

A :class:`DataSpec` names where samples come from: ``digits-noise`` (the bundled default), ``digits``,
``folder:PATH`` (one sub-folder of images per class), ``cifar10:PATH`` / ``cifar100:PATH`` (the python-pickle folders)
or ``npz:PATH`` (saved activations: features, not images, so no model runs on them). :func:`analysis_data` is what
the analyses look at (the bundled sources' and CIFAR's held-out split, all of a folder's images);
:func:`train_test` is what training experiments use (the bundled and CIFAR splits; a folder's seeded stratified
split); :func:`clamp_samples` takes N samples, or all there are with a note, never an error for "too many".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gbs_core.data import (
    BUNDLED_SOURCES,
    DEFAULT_SOURCE,
    DataError,
    Dataset,
    load_bundled,
    load_cifar,
    load_image_folder,
    stratified_split,
)

__all__ = ["DATA_KINDS", "DataSpec", "parse_data_spec", "analysis_data", "train_test", "clamp_samples",
           "FOLDER_TEST_FRACTION", "content_signature", "check_data_root", "DATA_ROOT_ENV"]

DATA_ROOT_ENV = "GBS_DATA_ROOT"

DATA_KINDS = {
    "digits-noise": "the bundled digits in noise (default)",
    "digits": "the bundled plain digits",
    "folder": "an image folder, one sub-folder per class",
    "cifar10": "a CIFAR-10 python-pickle folder",
    "cifar100": "a CIFAR-100 python-pickle folder",
    "npz": "saved activations (.npz)",
}
FOLDER_TEST_FRACTION = 0.3  # a folder's held-out part, when an experiment trains


@dataclass(frozen=True)
class DataSpec:
    """A data source: ``kind`` in :data:`DATA_KINDS`, ``path`` for the non-bundled ones; ``signature`` (optional,
    :func:`content_signature`) makes two specs of the same path differ when its content changed, for memo keys."""

    kind: str = DEFAULT_SOURCE
    path: str = ""
    signature: str = ""

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"unknown data source {self.kind!r}; choose one of {', '.join(DATA_KINDS)}")
        if self.kind in BUNDLED_SOURCES and self.path:
            raise ValueError(f"the bundled source {self.kind!r} takes no path")
        if self.kind not in BUNDLED_SOURCES and not self.path:
            raise ValueError(f"the data source {self.kind!r} needs a path: write {self.kind}:PATH")

    @property
    def bundled(self) -> bool:
        return self.kind in BUNDLED_SOURCES

    @property
    def text(self) -> str:
        """As the command line writes it (``digits-noise``, ``folder:/data/pets``)."""
        return self.kind if self.bundled else f"{self.kind}:{self.path}"

    def __str__(self) -> str:
        return self.text


def parse_data_spec(text: str) -> DataSpec:
    """A :class:`DataSpec` from ``digits-noise``, ``digits``, ``folder:PATH``, ``cifar10:PATH``, ``cifar100:PATH``
    or ``npz:PATH`` (``image_folder:PATH`` is accepted for ``folder``). Raises ValueError saying what to write."""
    kind, sep, path = text.strip().partition(":")
    kind = {"image_folder": "folder", "image-folder": "folder"}.get(kind, kind)
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data source {text!r}; write one of digits-noise, digits, folder:PATH, "
                         "cifar10:PATH, cifar100:PATH, npz:PATH")
    return DataSpec(kind, str(Path(path).expanduser()) if sep and path else "")


def _images(spec: DataSpec, split: str) -> Dataset:
    if spec.kind == "npz":
        raise DataError(f"{spec.path} holds saved activations, not images: this needs images a model can run on "
                        "(digits-noise, digits, folder:PATH, cifar10:PATH or cifar100:PATH)")
    if spec.bundled:
        return load_bundled(spec.kind, split)  # type: ignore[arg-type]
    check_data_root(spec.path)
    if spec.kind == "folder":
        return load_image_folder(spec.path)
    return load_cifar(spec.path, variant=10 if spec.kind == "cifar10" else 100, split=split)  # type: ignore[arg-type]


def analysis_data(spec: DataSpec) -> Dataset:
    """The samples the analyses look at: the held-out split of the bundled sources and of CIFAR, every image of a
    folder."""
    return _images(spec, "test")


def train_test(spec: DataSpec, *, seed: int = 0) -> tuple[Dataset, Dataset]:
    """The (train, test) parts an experiment that trains uses: the bundled sources' and CIFAR's own splits, a folder's
    seeded stratified split (``FOLDER_TEST_FRACTION`` held out)."""
    if spec.kind == "folder":
        return stratified_split(_images(spec, "test"), FOLDER_TEST_FRACTION, seed=seed)
    return _images(spec, "train"), _images(spec, "test")


def clamp_samples(data: Dataset, n: int | None, *, seed: int = 0) -> tuple[Dataset, str]:
    """A stratified subsample of ``n`` samples (None: all), or all of them when ``n`` is larger, with a note saying
    so ("" when nothing was clamped). Raises DataError for ``n`` < 1."""
    if n is not None and n < 1:
        raise DataError(f"N must be at least 1; got {n}")
    if n is None or n >= len(data):
        note = "" if n is None or n == len(data) else (
            f"N = {n} asked, but the data has {len(data)} samples: using all {len(data)}")
        return data, note
    return data.subsample(n, seed=seed), ""


def content_signature(kind: str, path: str) -> str:
    """A cheap fingerprint of what is at ``path`` now (every file's relative name, size and modification time), so
    a cache keyed on it sees a folder or file changed in place; "" for the bundled sources and for a path that does
    not exist (loading it then says why)."""
    import hashlib
    import os

    if kind in BUNDLED_SOURCES or not path:
        return ""
    root = Path(path).expanduser()
    h = hashlib.sha256()
    try:
        if root.is_file():
            st = root.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        elif root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    st = os.stat(os.path.join(dirpath, name))
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns};".encode())
        else:
            return ""
    except OSError:
        return ""
    return h.hexdigest()[:16]


def check_data_root(path: str) -> Path:
    """``path`` resolved (links followed); when ``$GBS_DATA_ROOT`` is set (a served lab), it must lie inside that
    folder: anything else is refused without saying what is there.

    Raises
    ------
    DataError
        The path is outside ``$GBS_DATA_ROOT``.
    """
    import os

    resolved = Path(path).expanduser().resolve()
    root = os.environ.get(DATA_ROOT_ENV)
    if root and not resolved.is_relative_to(Path(root).expanduser().resolve()):
        raise DataError(f"{path} is outside the data folder this server offers ({DATA_ROOT_ENV}); give a path inside "
                        "it, or upload the file")
    return resolved
