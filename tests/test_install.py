"""The installed package, as a device gets it: a wheel with the `runtime` extra, in a venv without torch."""

import json
import subprocess
import textwrap

import numpy as np
import pytest
from PIL import Image
from tiny_tflite import write_relu_model

import edge_sdk
from edge_sdk.data import bundled_photos


def test_wheel_installs_every_subpackage_and_runtime_runs_without_torch(runtime_venv, mnv2_onnx, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    tflite = write_relu_model(tmp_path / "relu.tflite")
    script = textwrap.dedent(f'''
        import importlib, importlib.util, json, sys
        import numpy as np
        assert importlib.util.find_spec("torch") is None, "torch must not be installed here"
        import edge_sdk
        from edge_sdk import runtime
        found = {{}}
        for name in ("edge_sdk.runtime", "edge_sdk.verify", "edge_sdk.devices", "edge_sdk.converters", "edge_sdk.quantize",
                     "edge_sdk.errors"):
            found[name] = importlib.import_module(name).__file__
        assert "torch" not in sys.modules
        y = runtime.load({str(mnv2_onnx.path)!r}, threads=1).run(np.load({str(tmp_path / "x.npy")!r}))[0]
        np.save({str(tmp_path / "y.npy")!r}, y)
        t = runtime.load({str(tflite)!r}).run(np.ones((1, 3, 4, 4), np.float32))[0]
        print(json.dumps({{"files": found, "tflite_sum": float(t.sum()), "torch_loaded": "torch" in sys.modules}}))
    ''')
    python = runtime_venv / "bin" / "python"
    # cwd away from the checkout, so `import edge_sdk` finds the installed copy, not the source tree
    proc = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, file in result["files"].items():
        assert "site-packages" in file, file
        assert file.endswith(name.replace(".", "/") + ("/__init__.py" if name != "edge_sdk.errors" else ".py"))
    assert result["torch_loaded"] is False
    assert result["tflite_sum"] == pytest.approx(48.0, abs=1e-5)
    expected = edge_sdk.runtime.load(mnv2_onnx.path).run(x)[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)


def test_cli_on_a_device_install(runtime_venv, mnv2_onnx, tmp_path):
    exe = runtime_venv / "bin" / "edge-sdk"
    proc = subprocess.run([str(exe), "bench", str(mnv2_onnx.path), "--runs", "3", "--warmup", "1", "--json"],
                          capture_output=True, text=True, cwd=mnv2_onnx.path.parent)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["latency_ms"]["p50"] > 0
    photo = tmp_path / "astronaut.png"
    Image.fromarray(next(bundled_photos(1))[1]).save(photo)
    proc = subprocess.run([str(exe), "classify", str(mnv2_onnx.path), str(photo), "--top-k", "3", "--json"],
                          capture_output=True, text=True, cwd=mnv2_onnx.path.parent)
    assert proc.returncode == 0, proc.stderr
    labels = [p["label"] for p in json.loads(proc.stdout)["results"][0]["predictions"]]
    assert labels == [p.label for p in edge_sdk.runtime.load(mnv2_onnx.path).classify(photo, top_k=3)]
    proc = subprocess.run([str(exe), "list"], capture_output=True, text=True, cwd=mnv2_onnx.path.parent)
    assert proc.returncode == 2 and "pip install 'edge-sdk[onnx]'" in proc.stderr and "Traceback" not in proc.stderr
