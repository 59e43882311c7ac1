"""Shared fixtures: artifacts converted once per test session (conversion takes seconds)."""

from __future__ import annotations

import pytest

import edge_sdk


@pytest.fixture(scope="session")
def mnv2_onnx(tmp_path_factory):
    """MobileNetV2 (width 1.0, random weights, seed 0) converted to ONNX once."""
    out = tmp_path_factory.mktemp("onnx") / "mobilenet_v2.onnx"
    return edge_sdk.convert("mobilenet_v2", target="onnx", out=out)


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory):
    """A small zoo model (MobileNetV2 0.35 at 96x96) with a dynamic batch dimension."""
    out = tmp_path_factory.mktemp("onnx_small")
    model = edge_sdk.create_model("mobilenet_v2_035", img_size=96)
    return edge_sdk.convert(model, target="onnx", out=out, dynamic_batch=True)
