"""Shared fixtures: artifacts converted once per test session (conversion takes seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(scope="session")
def runtime_venv(tmp_path_factory):
    """A device's light install: this checkout's wheel with the `runtime` extra in a fresh venv without torch."""
    work = tmp_path_factory.mktemp("install")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(root)], check=True)
    (wheel,) = work.glob("edge_sdk-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[runtime]"], check=True)
    return venv
