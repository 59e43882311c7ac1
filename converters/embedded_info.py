"""What every artifact carries about itself, the same for TFLite, ONNX and CoreML.

A file travels without its manifest (into an app, onto a phone), so the facts needed to feed
it and read its outputs go inside it: the model card, the preprocessing, the input contract,
class names, who made it and under which licence, and the int8 summary. Each format stores
this JSON in its own metadata slot (TFLite: a `Model.metadata` entry; ONNX: `metadata_props`;
CoreML: user-defined metadata), and `edge_sdk.runtime.model_info` reads it back.
"""

from __future__ import annotations

from .. import __version__
from ..errors import ConversionError
from ..models.labels import class_names
from ..runtime.model_info import INFO_FORMAT, INFO_KEY

DEFAULT_AUTHOR = "edge-sdk"

__all__ = ["INFO_KEY", "artifact_info"]


def artifact_info(card, *, precision: str, num_classes: int | None, layout: str = "NCHW", pixel_input: bool = False,
                  quantization: dict | None = None) -> dict:
    """The JSON an artifact embeds; `num_classes` is the first output's width, checked against the class names.

    `pixel_input`: the file takes RGB pixels 0..255 and normalises them itself; otherwise its
    input is already normalised per the card's preprocessing.
    """
    names, note = class_names(card) if card is not None else (None, "the model has no card, so no class names")
    if names is not None and num_classes is not None and len(names) != num_classes:
        raise ConversionError(f"{len(names)} class names for an output of {num_classes} classes",
                              "give one name per class (one per line) with --labels")
    sdk = __version__
    return {
        "format": INFO_FORMAT,
        "sdk_version": sdk,
        "precision": precision,
        "author": (card.author if card is not None else "") or DEFAULT_AUTHOR,
        "license": card.license if card is not None else "",
        "version": (card.version if card is not None else "") or f"edge-sdk {sdk} {precision}",
        "description": describe(card, precision, sdk),
        "model": card.to_dict() if card is not None else None,
        "preprocessing": card.preprocessing.to_dict() if card is not None else None,
        "input": {"pixels": pixel_input, "layout": layout},
        "labels": names,
        "labels_note": note,
        "quantization": quantization,
    }


def describe(card, precision: str, sdk: str) -> str:
    """One line for a model's description field: what it is, its paper, and how it was made."""
    about = [card.description, f"{card.paper} {card.paper_url}".strip()] if card is not None else []
    return "; ".join([*(a for a in about if a), f"{precision}, converted from PyTorch by edge-sdk {sdk}"])
