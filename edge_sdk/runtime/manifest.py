"""The manifest JSON written beside every artifact (`model.onnx` -> `model.onnx.json`).

It records the model card, conversion options, I/O specs and library versions;
the runtime reads the I/O layout from it, and `verify` the preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST_SUFFIX = ".json"


def manifest_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


def read_manifest(artifact: str | Path) -> dict | None:
    """The manifest beside `artifact`, or None when there is none or it is unreadable."""
    path = manifest_path(artifact)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
