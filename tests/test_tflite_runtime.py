"""Our .tflite files in tflite-runtime, the interpreter many boards still install, not only in ai-edge-litert.

tflite-runtime 2.14.0 (the last release, on PyPI for CPython 3.11) is built against numpy 1.x,
so it gets a venv of its own: tflite-runtime + numpy<2, and this checkout's torch-free
`edge_sdk.runtime` on PYTHONPATH. Each file runs there through `runtime.load(...).run(...)` on
the same photos as here, where ai-edge-litert runs it; the rest of the suite proves the
ai-edge-litert outputs against PyTorch, so agreement here carries parity over.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edge_sdk
from edge_sdk import runtime
from edge_sdk.data import load_samples

ROOT = Path(__file__).resolve().parents[1]
TFLITE_RUNTIME = "tflite-runtime==2.14.0"

# Float files of zoo models: the same numbers up to kernel rounding.
ZOO_CASES = [
    pytest.param("mobilevit_xxs", "fp32", {}, id="mobilevit-fp32"),  # attention, decomposed LayerNorm, SiLU
    pytest.param("mobilenet_v2_035", "fp16", {"nhwc_input": True}, id="mnv2-fp16-pixels"),
    pytest.param("efficientnet_b0", "int8-weights", {}, id="effnet-int8-weights", marks=pytest.mark.slow),
    pytest.param("cct_7_3x1_32", "fp32", {}, id="cct-fp32", marks=pytest.mark.slow),
]


class MobileBlocks(nn.Module):
    """The int8 op mix of the mobile families in six layers: conv + hard-swish, depthwise + ReLU6,
    squeeze-excite (mean, ReLU, hard-sigmoid, mul), a residual add, pooling and a classifier.

    Int8 across interpreters is compared on a shallow network: the kernels of two releases (and
    XNNPACK vs the builtin ones) round some requantisations differently, a deep random-weight
    zoo model amplifies such one-step differences layer by layer (MobileNetV3-Small int8: cosine
    0.94 between ai-edge-litert's own XNNPACK and builtin kernels), a shallow one does not.
    """

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.ReLU6())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Conv2d(8, 16, 1), nn.Hardsigmoid())
        self.pw = nn.Conv2d(16, 16, 1)
        self.head = nn.Linear(16, 10)
        self.card = edge_sdk.get_model_card("mobilenet_v2_035").with_(name="mobile_blocks", input_size=(3, 32, 32),
                                                                      num_classes=10, labels=None)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x)
        y = self.pw(y * self.se(y))
        return self.head((x + y).mean((2, 3)))


INT8_CASES = [
    pytest.param({"io": "int8"}, id="int8-io"),
    pytest.param({"io": "uint8", "nhwc_input": True}, id="uint8-pixels"),
]


@pytest.fixture(scope="module")
def tflite_runtime_python(tmp_path_factory):
    """A venv with tflite-runtime and numpy 1.x (no torch, no ai-edge-litert)."""
    venv = tmp_path_factory.mktemp("tflite-runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", TFLITE_RUNTIME, "numpy<2", "rich>=13", "pillow"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"pip could not install {TFLITE_RUNTIME} here: {proc.stderr.strip().splitlines()[-1][:200]}")
    return python


def _run_there(python: Path, artifact: Path, samples: Path, out: Path) -> dict:
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from edge_sdk import runtime
        assert "ai_edge_litert" not in sys.modules
        session = runtime.load({str(artifact)!r})
        np.save({str(out)!r}, session.run(np.load({str(samples)!r}))[0])
        print(json.dumps({{"runtime": session.runtime_version, "torch": "torch" in sys.modules}}))
    """)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([str(python), "-c", script], capture_output=True, text=True, env=env, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name, precision, options", ZOO_CASES)
def test_float_file_runs_the_same_in_tflite_runtime(tflite_runtime_python, name, precision, options, tmp_path):
    model = edge_sdk.create_model(name)
    artifact = edge_sdk.convert(model, "tflite", precision=precision, out=tmp_path, **options)
    expected, got = _both(tflite_runtime_python, artifact.path, load_samples(None, model.card.preprocessing, 4), tmp_path)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


@pytest.mark.parametrize("options", INT8_CASES)
def test_int8_file_runs_the_same_in_tflite_runtime(tflite_runtime_python, options, tmp_path):
    torch.manual_seed(0)
    model = MobileBlocks().eval()
    photos = load_samples(None, model.card.preprocessing, 16)
    artifact = edge_sdk.convert(model, "tflite", precision="int8", calibration=photos, out=tmp_path, **options)
    expected, got = _both(tflite_runtime_python, artifact.path, photos, tmp_path)
    step = runtime.load(artifact.path).outputs[0].quantization.scale[0]
    assert float(np.abs(got - expected).max()) <= 2 * step * 1.001  # integer kernels: within two output steps
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.9


def _both(python: Path, artifact: Path, samples: np.ndarray, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ai-edge-litert's outputs here, tflite-runtime's in its venv) for the same samples."""
    np.save(tmp_path / "samples.npy", samples)
    expected = runtime.load(artifact).run(samples)[0]
    info = _run_there(python, artifact, tmp_path / "samples.npy", tmp_path / "out.npy")
    assert info == {"runtime": "tflite-runtime 2.14.0", "torch": False}
    got = np.load(tmp_path / "out.npy")
    assert got.shape == expected.shape
    return expected, got
