import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from edge_sdk.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_info(capsys):
    code, out, _ = run(capsys, "list", "mobilenet_v2*", "--json")
    assert code == 0
    models = {m["name"]: m for m in json.loads(out)["models"]}
    assert models["mobilenet_v2"]["params"] == 3_504_872 and models["mobilenet_v2"]["family"] == "mobilenet_v2"
    code, _, err = run(capsys, "list")
    assert code == 0 and "mobilenet_v2_035" in err and "MACs" in err
    code, out, _ = run(capsys, "info", "mobilenet_v2", "--json")
    assert code == 0 and json.loads(out)["preprocessing"]["size"] == [224, 224]
    code, _, err = run(capsys, "info", "mobilenet_v2")
    assert code == 0 and "1801.04381" in err and "3,504,872" in err


def test_convert_verify_bench(capsys, tmp_path):
    code, _, err = run(capsys, "convert", "mobilenet_v2_035", "--target", "onnx", "--out", str(tmp_path), "--count", "3")
    assert code == 0, err
    artifact = tmp_path / "mobilenet_v2_035.onnx"
    assert artifact.is_file() and "pass" in err and f"edge-sdk bench {artifact}" in err
    code, out, _ = run(capsys, "verify", str(artifact), "--model", "mobilenet_v2_035", "--count", "2", "--json")
    assert code == 0 and json.loads(out)["passed"] is True
    code, _, _ = run(capsys, "verify", str(artifact), "--model", "mobilenet_v2_050", "--count", "2")
    assert code == 1  # another network: parity fails
    code, _, err = run(capsys, "verify", str(artifact), "--model", "mobilenet_v2_035", "--num-classes", "10")
    assert code == 2 and "reference shape (8, 10) != artifact shape (8, 1000)" in err
    code, _, err = run(capsys, "bench", str(artifact), "--runs", "5", "--warmup", "1", "--threads", "1",
                       "--json", str(tmp_path / "bench.json"))
    assert code == 0 and "p99" in err
    assert json.loads((tmp_path / "bench.json").read_text())["runs"] == 5


def test_parity_failure_exits_1(capsys, tmp_path):
    code, _, _ = run(capsys, "convert", "mobilenet_v2_035", "--target", "onnx", "--out", str(tmp_path), "--no-verify")
    assert code == 0
    other = tmp_path / "other.pt"
    from edge_sdk.models import create_model

    torch.save(create_model("mobilenet_v2_035", seed=5).state_dict(), other)
    code, out, _ = run(capsys, "verify", str(tmp_path / "mobilenet_v2_035.onnx"), "--model", "mobilenet_v2_035",
                       "--weights", str(other), "--count", "2", "--json")
    assert code == 1 and json.loads(out)["passed"] is False


def test_user_factory_and_saved_program(capsys, tmp_path):
    src = tmp_path / "mynet.py"
    src.write_text(textwrap.dedent('''
        import torch
        from torch import nn

        def build(num_classes=4):
            torch.manual_seed(0)
            return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
    '''))
    code, out, err = run(capsys, "convert", f"{src}:build", "--target", "onnx", "--input-shape", "1,3,64,64",
                         "--out", str(tmp_path / "o"), "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["parity"]["passed"] and payload["artifact"]["inputs"][0]["shape"] == [1, 3, 64, 64]
    # verify takes the input size from the artifact's manifest (the factory is seeded: the same weights again)
    code, out, err = run(capsys, "verify", str(tmp_path / "o" / "build.onnx"), "--model", f"{src}:build", "--json")
    assert code == 0, err
    assert json.loads(out)["passed"]
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.randn(1, 3, 32, 32))
    torch.export.save(torch.export.export(model.eval(), (torch.randn(1, 3, 32, 32),)), tmp_path / "prog.pt2")
    code, out, err = run(capsys, "convert", str(tmp_path / "prog.pt2"), "--target", "onnx", "--out", str(tmp_path / "p"), "--json")
    assert code == 0, err
    assert json.loads(out)["parity"]["passed"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["convert", "mobilenetv2", "--target", "onnx"], "did you mean: mobilenet_v2"),
        (["info", "resnet_9000"], "unknown model 'resnet_9000'"),
        (["bench", "{tmp}/missing.onnx"], "does not exist"),
        (["bench", "{tmp}/text.tflite"], "not a TFLite flatbuffer"),
        (["convert", "mobilenet_v2_035", "--target", "onnx", "--out", "{tmp}/text.tflite/sub"], "is a file in the way"),
        (["convert", "{tmp}/nofile.py:build", "--target", "onnx"], "does not exist"),
        (["convert", "mobilenet_v2_035", "--target", "onnx", "--weights", "{tmp}/text.tflite"], "cannot read weights"),
        (["verify", "{tmp}/text.tflite", "--model", "mobilenet_v2"], "not a TFLite flatbuffer"),
    ],
)
def test_bad_input_gives_one_message_and_exit_2(capsys, tmp_path, argv, message):
    (tmp_path / "text.tflite").write_text("hello")
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("*.partial"))


def test_missing_optional_dependency_names_the_extra(capsys, tmp_path, monkeypatch, small_onnx):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    code, _, err = run(capsys, "bench", str(small_onnx.path), "--runs", "1")
    assert code == 2 and "pip install 'edge-sdk[runtime]'" in err and "onnxruntime" in err


def test_console_script_exit_code_and_debug_traceback():
    exe = shutil.which("edge-sdk")
    assert exe, "the edge-sdk console script is not installed"
    proc = subprocess.run([exe, "info", "mobilenetv2"], capture_output=True, text=True)
    assert proc.returncode == 2 and "did you mean" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([exe, "info", "mobilenetv2", "--debug"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
