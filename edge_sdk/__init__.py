"""edge-sdk: PyTorch image classifiers to TFLite, CoreML and ONNX, with parity and latency proved.

    import edge_sdk
    artifact = edge_sdk.convert("mobilenet_v2", target="onnx")
    print(edge_sdk.check_parity("mobilenet_v2", artifact).passed)
    session = edge_sdk.runtime.load(artifact.path)

Names are imported on first use, so `import edge_sdk.runtime` on a device never
pulls in torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "convert": "edge_sdk.api",
    "resolve_model": "edge_sdk.api",
    "capture": "edge_sdk.graph",
    "CapturedGraph": "edge_sdk.graph",
    "create_model": "edge_sdk.models",
    "list_models": "edge_sdk.models",
    "get_model_card": "edge_sdk.models",
    "ModelCard": "edge_sdk.models",
    "check_parity": "edge_sdk.verify",
    "ParityReport": "edge_sdk.verify",
    "benchmark": "edge_sdk.verify",
    "BenchReport": "edge_sdk.verify",
    "Artifact": "edge_sdk.converters",
    "TARGETS": "edge_sdk.converters",
    "EdgeSDKError": "edge_sdk.errors",
}

__all__ = sorted(_EXPORTS) + ["runtime"]


def __getattr__(name: str):
    if name == "runtime":
        return importlib.import_module("edge_sdk.runtime")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")
