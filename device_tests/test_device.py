"""Benchmark and parity on the device under test (an emulated Raspberry Pi unless EDGE_SDK_DEVICE says otherwise).

Emulation is ~300-900x slower than the host, so the model is small (MobileNetV2 0.35 at 96x96) and runs are few.
"""

import json

import pytest
import torch

import edge_sdk
from edge_sdk.cli import main
from edge_sdk.devices import connect

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    model = edge_sdk.create_model("mobilenet_v2_035", img_size=96)
    (out / "small.py").write_text("import edge_sdk\n\ndef build():\n    return edge_sdk.create_model('mobilenet_v2_035', img_size=96)\n")
    graph = edge_sdk.capture(model, torch.zeros(1, 3, 96, 96), card=model.card)  # one capture for both files
    return out, [edge_sdk.convert(graph, target=t, out=out).path for t in ("tflite", "onnx")]


def test_describe_names_the_board_and_the_runtimes(device):
    target, ssh_config, expect = device
    d = connect(target, ssh_config=ssh_config).describe()
    assert d["arch"] and d["python"] and (d["runtimes"]["ai-edge-litert"] or d["runtimes"]["tflite-runtime"])
    if expect:
        assert expect["board"] in d["board"] and d["arch"] == expect["arch"]


def test_bench_and_verify_through_the_cli(device, artifacts, tmp_path, capsys):
    target, ssh_config, expect = device
    folder, files = artifacts
    common = ["--device", target] + (["--ssh-config", ssh_config] if ssh_config else [])
    code = main(["bench", *map(str, files), "--runs", "3", "--warmup", "1", "--threads", "1", "--json", str(tmp_path / "b.json"),
                 "--compare", "--plot", str(tmp_path / "b.png"), *common])
    assert code == 0, capsys.readouterr().err
    reports = json.loads((tmp_path / "b.json").read_text())["reports"]
    assert [r["backend"] for r in reports] == ["tflite", "onnxruntime"] and all(r["runs"] == 3 for r in reports)
    if expect:
        assert all(expect["board"] in r["device"]["board"] and r["device"]["arch"] == "aarch64" for r in reports)
    code = main(["verify", str(files[0]), "--model", f"{folder / 'small.py'}:build", "--count", "2", "--json", *common])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"] and report["samples"] == 2
