"""Write the image folder RESULTS.md uses as the user-chosen transfer target: the bundled plain digits (all 1797,
16x16), contrast-inverted (dark digits on white) and saved as PNGs in ``OUT/<digit>/<index>.png``.

    .venv/bin/python bench/transfer_folder.py /tmp/inverted_digits
    .venv/bin/python -m gbs_core transfer --target image-folder --folder /tmp/inverted_digits --out results/transfer_folder
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gbs_core.data import load_digits  # noqa: E402


def main(out: Path) -> None:
    data = load_digits("all")
    for i, (img, label) in enumerate(zip(data.images[:, 0].numpy(), data.labels, strict=True)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(255 * (1.0 - img)).astype(np.uint8)).save(folder / f"{i:04d}.png")
    print(f"wrote {len(data)} images into {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/inverted_digits"))
