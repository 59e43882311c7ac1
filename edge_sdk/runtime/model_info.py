"""ModelInfo: what an artifact says about itself, read back the same way for every format.

edge-sdk embeds one JSON document in every file it writes (converters/embedded_info.py): the
model card, the preprocessing, the input contract and the class names. A Session reads it from
the file itself (the manifest beside the file is the fallback for files without it), so
`session.classify(photo)` preprocesses and labels correctly wherever the file travelled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..data import Preprocessing

INFO_KEY = "edge_sdk"  # the metadata entry / property name in every format
INFO_FORMAT = "edge-sdk-info/1"


@dataclass(frozen=True)
class ModelInfo:
    """How to feed an artifact and read its outputs; `source` says where it was found."""

    name: str
    task: str = "classification"
    precision: str = ""
    preprocessing: Preprocessing | None = None
    labels: tuple[str, ...] | None = None
    labels_note: str | None = None
    pixel_input: bool = False  # the file takes RGB pixels 0..255 and normalises them itself
    author: str = ""
    license: str = ""
    version: str = ""
    description: str = ""
    sdk_version: str = ""
    quantization: dict | None = None
    source: str = "none"  # "file", "manifest" or "none"

    @classmethod
    def from_embedded(cls, info: dict, *, labels=None, source: str = "file") -> "ModelInfo":
        """From the embedded JSON; `labels` overrides its class names (TFLite keeps them in a packed file)."""
        card = info.get("model") or {}
        names = labels if labels is not None else info.get("labels")
        return cls(
            name=card.get("name", "model"),
            task=card.get("task", "classification"),
            precision=info.get("precision", ""),
            preprocessing=_preprocessing(info.get("preprocessing")),
            labels=tuple(names) if names else None,
            labels_note=info.get("labels_note"),
            pixel_input=bool((info.get("input") or {}).get("pixels")),
            author=info.get("author", ""),
            license=info.get("license", ""),
            version=info.get("version", ""),
            description=info.get("description", ""),
            sdk_version=info.get("sdk_version", ""),
            quantization=info.get("quantization"),
            source=source,
        )

    @classmethod
    def from_manifest(cls, manifest: dict) -> "ModelInfo":
        """From the manifest JSON beside an artifact (files written before the embedded info existed, .pt2)."""
        card = manifest.get("model") or {}
        labels = card.get("labels")
        return cls(
            name=card.get("name", "model"),
            task=card.get("task", "classification"),
            precision=manifest.get("precision", ""),
            preprocessing=_preprocessing(manifest.get("preprocessing")),
            labels=tuple(labels) if isinstance(labels, list) else None,
            labels_note=None if isinstance(labels, list) else "the manifest names no classes",
            quantization=(manifest.get("quantization") or {}).get("summary"),
            source="manifest",
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "precision": self.precision,
            "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
            "labels": len(self.labels) if self.labels else None,
            "labels_note": self.labels_note,
            "pixel_input": self.pixel_input,
            "author": self.author,
            "license": self.license,
            "version": self.version,
            "sdk_version": self.sdk_version,
            "source": self.source,
        }


def parse_embedded(text: str | bytes | None) -> dict | None:
    """The embedded JSON document, or None when `text` is missing or is not edge-sdk's."""
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    return info if isinstance(info, dict) and info.get("format") == INFO_FORMAT else None


def _preprocessing(d: dict | None) -> Preprocessing | None:
    if not d:
        return None
    return Preprocessing(size=tuple(d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]), crop_pct=d["crop_pct"],
                         channels=d["channels"], interpolation=d["interpolation"])
