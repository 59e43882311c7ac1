"""Calibration samples: every source a user may hold, resolved to one float32 NCHW array.

Sources: a folder of images, a .npy / .npz file, an array or tensor, an iterable of
tensors, or (by default) the bundled photographs with light augmentation. The
default is a stand-in, so it warns: ranges measured on the deployment domain are better.

A zoo model with random weights has no deployment domain, and its int8 file can only be
judged against the simulation of its own plan; it calibrates on the very photos parity
compares on. Ranges fitted to other images (the 64 augmented ones) left that simulation
so sensitive to rounding that a correct MobileNetV3-Small file could not be told from a
wrong one (the simulation moved to cosine 0.887 under 1e-6 noise; 0.997 on the parity photos).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..data import PARITY_PHOTOS, PHOTO_NAMES, Preprocessing, load_samples, photo_batch
from ..errors import DataError

# Light augmentation of the bundled photos: crops of several sizes, each also mirrored.
_CROP_PCTS = (0.875, 1.0, 0.7, 0.55)
# The 16 bundled photos in two crops, each also mirrored: more variants of the same 16 scenes
# add calibration time, not information.
STAND_IN_SAMPLES = 64


class CalibrationWarning(UserWarning):
    """Calibration used stand-in data rather than the user's own."""


def preprocessing_for(graph) -> Preprocessing:
    """The model card's evaluation transform, or a plain one sized to the graph's input."""
    card = getattr(graph, "card", None)
    if card is not None:
        return card.preprocessing
    _, channels, h, w = graph.example_inputs[0].shape
    return Preprocessing(size=(h, w), channels=channels)


def calibration_samples(source, prep: Preprocessing, count: int, *, ranges: bool = True,
                        random_weights: bool = False) -> np.ndarray:
    """Resolve `source` to at most `count` float32 NCHW samples of the model's input shape.

    `ranges=False`: the samples set no quantisation range (weights-only schemes use them
    only to report sensitivity), so the stand-in photos need no warning.
    `random_weights`: with no source, calibrate on the parity photos (see the module's docstring).
    """
    if source is None:
        if random_weights:
            samples = photo_batch(prep, min(count, PARITY_PHOTOS))
            advice = ("random weights: calibrated on the {} bundled photos parity compares on, so the int8 file is "
                      "judged against its plan on the images its ranges came from; for a deployment, load trained "
                      "weights and calibrate on images of its domain (--calib FOLDER or a .npy file; calibration= in Python)")
        else:
            samples = _augmented_photos(prep, min(count, STAND_IN_SAMPLES))
            advice = ("calibrated on {} augmented bundled photos; calibration images from the deployment domain "
                      "give better int8 ranges (--calib FOLDER or a .npy file; calibration= in Python)")
        if ranges:
            warnings.warn(advice.format(len(samples)), CalibrationWarning, stacklevel=3)
        return samples
    if isinstance(source, torch.Tensor):
        samples = source.detach().cpu().float().numpy()
    elif isinstance(source, (str, Path, np.ndarray)):
        samples = load_samples(source, prep, count)
    elif isinstance(source, Iterable):
        samples = _from_iterable(source, count)
    else:
        raise DataError(f"cannot calibrate from a {type(source).__name__}",
                        "pass a folder of images, a .npy/.npz file, an array or an iterable of tensors")
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 3:
        samples = samples[None]
    expected = (prep.channels, *prep.size)
    if samples.ndim != 4 or tuple(samples.shape[1:]) != expected:
        raise DataError(f"calibration samples have shape {tuple(samples.shape)}; the model takes (N, {', '.join(map(str, expected))})")
    if len(samples) == 0:
        raise DataError("the calibration source holds no samples")
    return np.ascontiguousarray(samples[:count])


def _from_iterable(source, count: int) -> np.ndarray:
    batches, total = [], 0
    for item in source:
        if isinstance(item, (tuple, list)):  # (images, labels) from a DataLoader
            item = item[0]
        arr = item.detach().cpu().float().numpy() if isinstance(item, torch.Tensor) else np.asarray(item, np.float32)
        arr = arr[None] if arr.ndim == 3 else arr
        batches.append(arr)
        total += len(arr)
        if total >= count:
            break
    if not batches:
        raise DataError("the calibration iterable yielded nothing", "pass at least one (C, H, W) or (N, C, H, W) tensor")
    return np.concatenate(batches)


def _augmented_photos(prep: Preprocessing, count: int) -> np.ndarray:
    """Up to `count` deterministic variants of the bundled photos (crop scale x mirror)."""
    batches = []
    for pct in _CROP_PCTS:
        batch = photo_batch(Preprocessing(prep.size, prep.mean, prep.std, pct, prep.channels, prep.interpolation),
                            len(PHOTO_NAMES))
        batches += [batch, batch[..., ::-1]]
    return np.ascontiguousarray(np.concatenate(batches)[:count])


def describe_calibration(source, count: int, *, random_weights: bool = False) -> str:
    """One line for reports and manifests: how many samples and where from."""
    if source is None and random_weights:
        return f"the {count} bundled photos parity compares on (random weights)"
    if source is None:
        return f"{count} augmented bundled photos (stand-in data)"
    if isinstance(source, (str, Path)):
        return f"{count} samples from {source}"
    return f"{count} samples from a {type(source).__name__}"
