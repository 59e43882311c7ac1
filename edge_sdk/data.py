"""Real sample data for parity and calibration: bundled photos, image folders, .npy files.

Everything here returns float32 NCHW batches already preprocessed per a
`Preprocessing` (resize shorter side, centre crop, scale to [0, 1], normalise),
so parity and calibration see exactly what a deployed app would feed the model.
Nothing is downloaded: the default photos ship inside scikit-image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import DataError, require
from .progress import track

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# scikit-image's bundled photographs (no download needed), colour ones first.
PHOTO_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "immunohistochemistry",
    "hubble_deep_field",
    "colorwheel",
    "retina",
    "camera",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
    "horse",
)

# The photos parity compares on by default; a random zoo model's BatchNorm statistics and its
# int8 ranges (no calibration data given) come from the same ones.
PARITY_PHOTOS = 8

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Preprocessing:
    """Evaluation transform: resize the shorter side to size/crop_pct, centre crop, normalise."""

    size: tuple[int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    channels: int = 3
    interpolation: str = "bilinear"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """HWC (or HW) uint8/bool/float image -> float32 CHW."""
        pil = require("PIL.Image", package="pillow", extra="onnx", purpose="Image preprocessing")
        image = _as_uint8_rgb(image, self.channels)
        h, w = self.size
        scale = max(h, w) / self.crop_pct / min(image.shape[:2])
        new_h = max(h, round(image.shape[0] * scale))
        new_w = max(w, round(image.shape[1] * scale))
        mode = {"bilinear": pil.BILINEAR, "bicubic": pil.BICUBIC, "nearest": pil.NEAREST}[self.interpolation]
        img = pil.fromarray(image.squeeze(-1) if self.channels == 1 else image)
        img = img.resize((new_w, new_h), mode)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[:, :, None]
        top, left = (new_h - h) // 2, (new_w - w) // 2
        arr = arr[top : top + h, left : left + w]
        mean = np.asarray(self.mean, np.float32)[: self.channels]
        std = np.asarray(self.std, np.float32)[: self.channels]
        arr = (arr - mean) / std
        return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)

    def to_dict(self) -> dict:
        return {
            "size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
            "channels": self.channels,
            "interpolation": self.interpolation,
        }


def _as_uint8_rgb(image: np.ndarray, channels: int) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:  # drop alpha
        img = img[:, :, :3]
    if channels == 1:
        if img.shape[2] == 3:
            img = (img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)[..., None]
        return img
    if channels == 3:
        return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    raise DataError(
        f"photos have 1 or 3 channels but the model takes {channels}",
        "give your own samples as a .npy file of shape (N, C, H, W)",
    )


def bundled_photos(limit: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, HWC uint8 image) for scikit-image's bundled photographs."""
    for name in PHOTO_NAMES[:limit]:
        yield name, _photo(name)


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    skdata = require("skimage.data", package="scikit-image", extra="onnx", purpose="The default sample photos")
    image = getattr(skdata, name)()
    if isinstance(image, tuple):  # stereo pairs
        image = image[0]
    image.setflags(write=False)
    return image


def photo_batch(prep: Preprocessing, count: int = PARITY_PHOTOS) -> np.ndarray:
    """`count` real photos preprocessed per `prep`, as float32 NCHW."""
    if not 1 <= count <= len(PHOTO_NAMES):
        raise DataError(f"asked for {count} bundled photos; there are {len(PHOTO_NAMES)}",
                        "pass a folder of your own images or a .npy file for more samples")
    return np.stack([prep(image) for _, image in bundled_photos(count)])


def image_folder_batch(folder: str | Path, prep: Preprocessing, limit: int | None = None) -> np.ndarray:
    """Decode every image in `folder` (sorted by name), preprocessed per `prep`."""
    pil = require("PIL.Image", package="pillow", extra="onnx", purpose="Reading an image folder")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder", "pass a folder of .jpg/.png images or a .npy file")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    batch, unreadable = [], []
    for path in track(files, f"Decoding {len(files)} images from {folder}"):
        try:
            with pil.open(path) as img:
                batch.append(prep(np.asarray(img.convert("RGB"))))
        except (OSError, ValueError):
            unreadable.append(path.name)
    if not batch:
        detail = f" ({len(unreadable)} unreadable: {', '.join(unreadable[:3])})" if unreadable else ""
        raise DataError(
            f"no readable image in {folder}{detail}",
            f"put images with one of these suffixes there: {', '.join(sorted(IMAGE_SUFFIXES))}",
        )
    return np.stack(batch)


def array_file_batch(path: str | Path, expected_chw: tuple[int, int, int] | None = None) -> np.ndarray:
    """Load samples from .npy (N,C,H,W) or .npz (first array), checked against the model's input."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read samples from {path}: {exc}", "save them with numpy.save as float32 (N, C, H, W)") from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        if not data.files:
            raise DataError(f"{path} holds no arrays", "save the samples with numpy.savez")
        data = data[data.files[0]]
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 3:
        data = data[None]
    if data.ndim != 4:
        raise DataError(f"samples in {path} have shape {data.shape}; expected (N, C, H, W)")
    if expected_chw is not None and tuple(data.shape[1:]) != tuple(expected_chw):
        raise DataError(
            f"samples in {path} have shape {tuple(data.shape[1:])} per sample but the model takes {tuple(expected_chw)}",
            "preprocess them to the model's input size, or pass a folder of images instead",
        )
    return data


def load_samples(source, prep: Preprocessing, count: int = PARITY_PHOTOS) -> np.ndarray:
    """Resolve any sample source to float32 NCHW: None (bundled photos), folder, .npy/.npz, or an array."""
    if source is None:
        return photo_batch(prep, count)
    if isinstance(source, np.ndarray):
        return np.asarray(source, np.float32)
    path = Path(source)
    if not path.exists():
        raise DataError(f"sample source {path} does not exist", "pass a folder of images or a .npy file")
    if path.is_dir():
        return image_folder_batch(path, prep, limit=count if count else None)
    if path.suffix.lower() in {".npy", ".npz"}:
        return array_file_batch(path, (prep.channels, *prep.size))
    raise DataError(f"cannot use {path} as samples", "pass a folder of images, a .npy or a .npz file")
