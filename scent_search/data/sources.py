"""Image sources: decoded RGB images kept in one flat uint8 buffer, and the train/validation split.

Two kinds of data setting, from a small registry (`load_data`):
- `None` / `"default"`: the natural RGB photos shipped inside scikit-image's wheel, read from
  `site-packages/skimage/data/` (no download, no pooch), with a fixed image-level split.
- a folder path: every PNG/JPEG below it, searched recursively. If it holds `train/` and `val/` (or
  `valid/`) subfolders they are the split; otherwise every 10th file of the sorted list (at least one)
  is held out for validation.

Every image is decoded when the source is built, so a bad file fails the study before any training,
with a `DataError` naming the file. Grayscale, palette, 16-bit and RGBA images are converted to 8-bit RGB
(alpha is dropped).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from scent_search.config import TrainConfig
from scent_search.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# The embedded default: (file in skimage/data, split). The split is fixed so PSNRs are comparable
# across trials and studies. Validation holds one animal photo and one still life; retina and
# hubble_deep_field (mostly dark background) stay in training.
DEFAULT_IMAGES: tuple[tuple[str, str], ...] = (
    ("astronaut.png", "train"),
    ("rocket.jpg", "train"),
    ("motorcycle_left.png", "train"),
    ("hubble_deep_field.jpg", "train"),
    ("ihc.png", "train"),  # immunohistochemistry
    ("retina.jpg", "train"),
    ("chelsea.png", "val"),
    ("coffee.png", "val"),
)


def skimage_data_dir() -> Path:
    """The folder of images inside the installed scikit-image wheel (imports nothing that downloads)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise DataError("scikit-image is not installed: the default data set ships inside its wheel")
    return Path(spec.origin).parent / "data"


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to a (H, W, 3) uint8 array. Raises DataError naming the file."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16/32-bit grayscale: PIL's convert("RGB") would clip, so scale to 8 bits by hand.
                a = np.asarray(im, dtype=np.float64)
                peak = 65535.0 if a.max() > 255 else 255.0
                a = np.clip(np.round(a / peak * 255.0), 0, 255).astype(np.uint8)
                return np.repeat(a[..., None], 3, axis=-1)
            if im.mode == "F":
                a = np.clip(np.round(np.asarray(im, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
                return np.repeat(a[..., None], 3, axis=-1)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such image file") from e
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from e


class ImageSource:
    """A list of RGB images in one flat uint8 buffer, so crops of many images gather in one indexing op.

    buffer: (3, sum H_i*W_i) uint8; image i occupies buffer[:, offsets[i] : offsets[i] + H_i*W_i],
    row-major. heights / widths / offsets: (N,) int64.
    """

    def __init__(self, images: Sequence[np.ndarray], names: Sequence[str]):
        if len(images) != len(names):
            raise ValueError("images and names differ in length")
        if not images:
            raise DataError("an image source needs at least one image")
        self.names = [str(n) for n in names]
        self.heights = torch.tensor([a.shape[0] for a in images], dtype=torch.int64)
        self.widths = torch.tensor([a.shape[1] for a in images], dtype=torch.int64)
        sizes = self.heights * self.widths
        self.offsets = torch.cumsum(sizes, 0) - sizes
        # (3, total) uint8: channel-first so a gather returns (3, ...) directly.
        self.buffer = torch.from_numpy(np.concatenate([a.reshape(-1, 3) for a in images], 0).T.copy())

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike]) -> "ImageSource":
        return cls([decode_image(p) for p in paths], [str(p) for p in paths])

    def __len__(self) -> int:
        return len(self.names)

    def image(self, i: int) -> torch.Tensor:
        """Image i as a (3, H, W) uint8 tensor (a view of the buffer)."""
        h, w, o = int(self.heights[i]), int(self.widths[i]), int(self.offsets[i])
        return self.buffer[:, o:o + h * w].view(3, h, w)

    def check_min_side(self, side: int, purpose: str) -> None:
        """Raise DataError naming the first image whose shorter side is below `side` pixels."""
        short = torch.minimum(self.heights, self.widths)
        bad = (short < side).nonzero().flatten()
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{self.names[i]}: image is {int(self.widths[i])}x{int(self.heights[i])} pixels, "
                            f"smaller than the {side}x{side} crop needed for {purpose}")


@dataclass(frozen=True)
class DataSplit:
    """The training and validation images of one data setting. `spec` is what the user gave."""

    train: ImageSource
    val: ImageSource
    spec: str


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Every PNG/JPEG below `folder`, searched recursively, sorted. DataError if none or no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no PNG/JPEG images found (searched recursively)")
    return files


def _default_split() -> tuple[list[Path], list[Path]]:
    root = skimage_data_dir()
    paths = {split: [root / name for name, s in DEFAULT_IMAGES if s == split] for split in ("train", "val")}
    for p in paths["train"] + paths["val"]:
        if not p.is_file():
            raise DataError(f"{p}: default image missing from the scikit-image installation")
    return paths["train"], paths["val"]


def _folder_split(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    folder = Path(folder)
    train_dir = folder / "train"
    val_dir = next((folder / n for n in ("val", "valid") if (folder / n).is_dir()), None)
    if train_dir.is_dir() and val_dir is not None:
        return find_images(train_dir), find_images(val_dir)
    files = find_images(folder)
    if len(files) < 2:
        raise DataError(f"{folder}: holds {len(files)} image; need at least 2 (one for training, one for "
                        f"validation), or train/ and val/ subfolders")
    # Every 10th file (at least one) is held out, spread over the sorted list rather than its tail.
    n_val = max(1, len(files) // 10)
    step = len(files) / n_val
    val_idx = {int(step * k + step - 1) for k in range(n_val)}
    return [p for i, p in enumerate(files) if i not in val_idx], [p for i, p in enumerate(files) if i in val_idx]


# Data-setting registry: name -> function returning (train files, val files). Anything else is a folder.
DATA_SOURCES: dict[str, Callable[[], tuple[list[Path], list[Path]]]] = {"default": _default_split}


def _load_files(train_files: Sequence[Path], val_files: Sequence[Path], spec: str) -> DataSplit:
    return DataSplit(train=ImageSource.from_files(train_files), val=ImageSource.from_files(val_files), spec=spec)


@functools.lru_cache(maxsize=None)
def _load_registered(name: str) -> DataSplit:
    # The embedded sets are small (the default is ~5 M pixels) and read by every trial: decode them once.
    # Folders are decoded afresh each time, so edits are seen and a large set is not pinned in memory.
    return _load_files(*DATA_SOURCES[name](), spec=name)


def load_data(spec: str | os.PathLike | None = None, train_cfg: TrainConfig | None = None) -> DataSplit:
    """Turn a data setting into decoded train/val sources.

    spec: None or "default" (scikit-image photos), or a folder path. With `train_cfg`, every training image
    must hold the largest HR crop (round(lr_size * scale_max)) and every validation image the validation
    crop (val_hr_size); a smaller image is a DataError naming it.
    """
    name = "default" if spec is None else str(spec)
    split = _load_registered(name) if name in DATA_SOURCES else _load_files(*_folder_split(name), spec=name)
    if train_cfg is not None:
        side = round(train_cfg.lr_size * train_cfg.scale_max)
        split.train.check_min_side(side, f"training (the largest HR crop, lr_size*scale_max = {side})")
        split.val.check_min_side(train_cfg.val_hr_size, f"validation (val_hr_size = {train_cfg.val_hr_size})")
    return split
