"""`session.classify(image)`: a photo in, named classes with scores out, for every format.

The preprocessing and the class names come from the artifact itself (Session.info), so the
same call gives the same answer on .tflite, .onnx and .mlpackage, with no preprocessing code
in the app. Scores are softmax probabilities; an output that already is a probability
distribution (a model ending in softmax) is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError, require


@dataclass(frozen=True)
class Prediction:
    """One class of a classification: its output index, its name and its score (probability)."""

    index: int
    label: str
    score: float

    def __str__(self) -> str:
        return f"{self.label} ({self.score:.3f})"


def classify(session, image, top_k: int = 5) -> list[Prediction] | list[list[Prediction]]:
    """Top-`top_k` predictions for one image (a file path, a PIL image or an HWC array), or a list per image."""
    info = session.info
    if info.task != "classification":
        raise InputError(f"{session.path.name} is a {info.task} model, not a classifier",
                         "use session.run(...) for its output vectors")
    if info.preprocessing is None:
        raise InputError(f"{session.path.name} does not say how to preprocess an image (no edge-sdk metadata, no manifest)",
                         "convert it with edge-sdk, or preprocess yourself and call session.run(...)")
    if top_k < 1:
        raise InputError(f"top_k must be at least 1, got {top_k}")
    many = isinstance(image, (list, tuple))
    images = list(image) if many else [image]
    batch = np.stack([info.preprocessing(load_image(x)) for x in images])
    logits = session.run(batch)[0].reshape(len(images), -1)
    results = [_top(probabilities(row), info.labels, top_k) for row in logits]
    return results if many else results[0]


def load_image(image) -> np.ndarray:
    """An HWC (or HW) image array from a path, a PIL image or an array."""
    if isinstance(image, (str, Path)):
        pil = require("PIL.Image", package="pillow", extra="runtime", purpose="Reading image files")
        path = Path(image)
        if not path.is_file():
            raise DataError(f"image {path} does not exist", "pass the path of a .jpg / .png file, a PIL image or an array")
        try:
            with pil.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise DataError(f"cannot read {path} as an image: {exc}", "pass a .jpg / .png file") from None
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image, without importing PIL
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise InputError(f"an image array must be HWC (or HW) with 1, 3 or 4 channels, got shape {array.shape}",
                         "pass one photo as height x width x RGB; for a batch of tensors use session.run(...)")
    return array


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Softmax of logits; an output that already sums to 1 in [0, 1] is kept."""
    scores = np.asarray(scores, np.float64)
    if scores.min() >= 0 and scores.max() <= 1 and abs(scores.sum() - 1) < 1e-3:
        return scores
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def _top(probs: np.ndarray, labels, k: int) -> list[Prediction]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [Prediction(int(i), labels[i] if labels is not None and i < len(labels) else f"class {i}", float(probs[i]))
            for i in order]
