"""`--target tflite --backend litert-torch`: Google's converter as an optional way through.

Without litert-torch the option fails with one install hint and leaves no file; the
default path never imports it. The real conversion runs where litert-torch is
installed (the throw-away venv of benchmarks/tflite_vs_litert_torch.py):
  <venv>/bin/pip install pytest && <venv>/bin/python -m pytest tests/test_tflite_backend.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edge_sdk.api import resolve_model
from edge_sdk.cli import main
from edge_sdk.runtime import load
from edge_sdk.verify import check_parity

# A small residual CNN as a user model file: conv + BN + ReLU, a skip connection, pooling, a classifier.
SMALL_CNN = textwrap.dedent("""
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
            self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6())
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            x = self.stem(x)
            x = x + self.block(x)
            return self.head(x.mean((2, 3)))

    def small_cnn():
        torch.manual_seed(0)
        return SmallCNN().eval()
""")


@pytest.fixture
def small_cnn(tmp_path):
    path = tmp_path / "small_cnn.py"
    path.write_text(SMALL_CNN)
    return f"{path}:small_cnn"


def test_missing_litert_torch_gives_one_install_hint_and_no_file(capsys, monkeypatch, tmp_path, small_cnn):
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # as if not installed, also where it is
    out = tmp_path / "out"
    code = main(["convert", small_cnn, "--input-shape", "1,3,32,32", "--target", "tflite", "--backend", "litert-torch",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install litert-torch==0.10.0" in err and "Traceback" not in err
    assert not out.exists()


def test_backend_applies_to_tflite_only(capsys, tmp_path, small_cnn):
    code = main(["convert", small_cnn, "--input-shape", "1,3,32,32", "--target", "onnx", "--backend", "litert-torch",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "--target tflite" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_default_tflite_path_never_imports_litert_torch(tmp_path, small_cnn):
    # A stand-in litert_torch first on the path records any import attempt, whether or not the real one is installed.
    fake = tmp_path / "fake" / "litert_torch"
    fake.mkdir(parents=True)
    marker = tmp_path / "imported"
    fake.joinpath("__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError('stand-in')\n")
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(fake.parent)!r})
        from edge_sdk.cli import main
        code = main(["convert", {small_cnn!r}, "--input-shape", "1,3,32,32", "--target", "tflite", "--out", {str(tmp_path)!r},
                     "--no-verify"])
        print(json.dumps({{"code": code, "loaded": sorted(m for m in sys.modules if "litert_torch" in m)}}))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "loaded": []}, run.stderr[-2000:]
    assert not marker.exists()
    assert (tmp_path / "small_cnn.tflite").is_file()


def test_litert_torch_conversion_passes_parity_through_the_interpreter(capsys, tmp_path, small_cnn):
    pytest.importorskip("litert_torch", reason="litert-torch is not installed (optional: it runs in the throw-away venv of "
                                               "benchmarks/tflite_vs_litert_torch.py)")
    reference = resolve_model(small_cnn, input_shape=(1, 3, 32, 32)).reference
    for flags, name in (([], "fp32"), (["--int8", "--calib-samples", "16"], "int8")):
        out = tmp_path / name / "small_cnn.tflite"
        code = main(["convert", small_cnn, "--input-shape", "1,3,32,32", "--target", "tflite", "--backend", "litert-torch",
                     "--out", str(out), "--count", "8", "--json", *flags])
        result = json.loads(capsys.readouterr().out)
        assert code == 0, result
        assert result["parity"]["passed"] and result["parity"]["backend"] == "tflite"
        manifest = json.loads(out.with_name(out.name + ".json").read_text())
        assert manifest["options"]["backend"] == "litert-torch" and manifest["precision"] == name
        assert manifest["inputs"][0]["layout"] == "NCHW" and "litert-torch" in manifest["versions"]
        # what `edge-sdk verify` runs: the file by its path, precision and preprocessing read from its manifest
        report = check_parity(reference, out, count=8)
        assert report.passed and report.precision == name, report.to_json()
        # and the file alone, without its manifest: the same layouts and numbers from its embedded info
        lone = tmp_path / f"lone-{name}.tflite"
        lone.write_bytes(out.read_bytes())
        alone, beside = load(lone), load(out)
        assert alone.info.source == "file" and alone.info.precision == name and alone.inputs == beside.inputs
        x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
        np.testing.assert_array_equal(alone.run(x)[0], beside.run(x)[0])
    int8 = json.loads((tmp_path / "int8" / "small_cnn.tflite.json").read_text())
    assert int8["inputs"][0]["dtype"] == "int8" and int8["inputs"][0]["quantization"] is not None
    assert "calibration" in int8["options"]


def test_a_file_written_by_another_converter_gets_our_metadata(tmp_path):
    """What --backend litert-torch does to litert-torch's file: the card, class names and quantiser go inside it,
    with the graph, weights and outputs unchanged (here on a one-op file written without any metadata)."""
    from edge_sdk.converters.tflite_litert_torch import with_metadata
    from tiny_tflite import write_relu_model

    from edge_sdk.models import get_model_card

    plain = write_relu_model(tmp_path / "plain.tflite", dtype="float32")
    card = get_model_card("mobilenet_v2_035").with_(name="relu_probe", labels=("red", "green", "blue"))
    options = {"backend": "litert-torch", "quantizer": "PT2E (test)", "calibration": "none"}
    described = tmp_path / "described.tflite"
    described.write_bytes(with_metadata(plain.read_bytes(), card, "fp32", options))
    before, after = load(plain), load(described)
    assert before.info.source == "none"
    assert after.info.source == "file" and after.info.name == "relu_probe" and after.info.labels == ("red", "green", "blue")
    assert after.info.quantization == {"quantizer": "PT2E (test)", "calibration": "none"}
    # The layout travels too: litert-torch keeps PyTorch's NCHW inside, so the file's 4-D tensors are taken as they
    # are, where a file without the entry is read as NHWC inside and shown as NCHW.
    assert (before.inputs[0].layout, after.inputs[0].layout) == ("NHWC", "NCHW")
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 3)).astype(np.float32)
    assert np.array_equal(before.run(x.transpose(0, 3, 1, 2))[0].transpose(0, 2, 3, 1), after.run(x)[0])
