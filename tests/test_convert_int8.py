"""`edge-sdk convert --int8`: calibration flags, the saved plan, the summary, and bad input.

Uses MobileNetV3-Small 0.75 (hard-swish, squeeze-excite: the layers naive PTQ breaks)
with 16 calibration samples, so each conversion takes seconds.
"""

import json

import numpy as np
import onnx
import pytest

from edge_sdk.cli import main

MODEL = "mobilenet_v3_small_075"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def calib_npy(tmp_path_factory):
    from edge_sdk.data import photo_batch
    from edge_sdk.models import get_model_card

    path = tmp_path_factory.mktemp("calib") / "calib.npy"
    np.save(path, photo_batch(get_model_card(MODEL).preprocessing, 16))
    return path


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory, calib_npy):
    """One int8 conversion with every calibration flag, shared by the checks below."""
    out_dir = tmp_path_factory.mktemp("int8")
    code = main(["convert", MODEL, "--target", "onnx", "--int8", "--calib", str(calib_npy), "--calib-samples", "16",
                 "--observer", "percentile", "--keep-float", "classifier", "--out", str(out_dir), "--count", "4",
                 "--json", str(out_dir / "result.json")])
    return code, out_dir


def test_int8_conversion_writes_plan_manifest_and_summary(int8_run):
    code, out_dir = int8_run
    assert code == 0
    result = json.loads((out_dir / "result.json").read_text())
    quant = result["artifact"]["quantization"]
    assert quant["scheme"] == "int8" and quant["observer"] == "percentile"
    assert quant["calibration"].startswith("16 samples from") and quant["float_layers"]
    assert all(layer.startswith("classifier") for layer in quant["float_layers"])
    assert quant["int8_layers"] > 40 and len(quant["most_sensitive"]) == 5
    sim = result["parity"]["simulation"]
    assert sim["artifact_vs_simulation_median_cosine"] > 0.999  # the file computes what the plan says
    assert result["parity"]["reference"] == "int8 simulation"  # random weights: judged against the plan
    plan_file = out_dir / f"{MODEL}.onnx.quantplan.json"
    manifest = json.loads((out_dir / f"{MODEL}.onnx.json").read_text())
    assert manifest["quantization"]["plan"] == plan_file.name and manifest["precision"] == "int8"
    plan = json.loads(plan_file.read_text())
    assert plan["recipe"]["keep_float"] == ["classifier"] and plan["recipe"]["calibration_samples"] == 16
    # The kept layer (classifier.fc, the last Gemm) reads a float weight; `head` and the convolutions int8 ones.
    graph = onnx.load(str(out_dir / f"{MODEL}.onnx")).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(gemms) == 2 and gemms[0].input[1] in dequantized and gemms[1].input[1] not in dequantized
    assert convs and all(c.input[1] in dequantized for c in convs)


def test_saved_plan_gives_the_same_file_without_calibrating(capsys, int8_run, tmp_path):
    _, out_dir = int8_run
    plan_file = out_dir / f"{MODEL}.onnx.quantplan.json"
    code, _, err = run(capsys, "convert", MODEL, "--target", "onnx", "--int8", "--plan", str(plan_file),
                       "--out", str(tmp_path), "--count", "2")
    assert code == 0, err
    assert "Calibrating" not in err
    assert (tmp_path / plan_file.name).read_bytes() == plan_file.read_bytes()
    again, first = (onnx.load(str(d / f"{MODEL}.onnx")).graph for d in (tmp_path, out_dir))
    assert [n.op_type for n in again.node] == [n.op_type for n in first.node]
    assert {i.name: i.raw_data for i in again.initializer} == {i.name: i.raw_data for i in first.initializer}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--calib", "{tmp}/images"], "no readable image in"),
        (["--plan", "{tmp}/plan.json"], "not an edge-sdk QuantPlan"),
        (["--plan", "{plan}"], "does not match this model"),
        (["--plan", "{plan}", "--observer", "mse"], "--plan already holds the calibration"),
        (["--calib-samples", "0"], "calibration_samples must be >= 1"),
    ],
)
def test_bad_quantisation_input_is_one_clear_error_and_no_file(capsys, tmp_path, int8_run, extra, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "plan.json").write_text('{"hello": 1}')
    plan = int8_run[1] / f"{MODEL}.onnx.quantplan.json"
    argv = ["convert", "mobilenet_v2_035", "--target", "onnx", "--int8", "--out", str(tmp_path / "out"),
            *[a.format(tmp=tmp_path, plan=plan) for a in extra]]
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_quantisation_flags_need_an_int8_precision(capsys, tmp_path):
    code, _, err = run(capsys, "convert", MODEL, "--target", "onnx", "--calib", str(tmp_path), "--out", str(tmp_path))
    assert code == 2 and "--calib apply to --int8" in err


def test_int8_weights_quantises_weights_only(capsys, tmp_path):
    code, out, err = run(capsys, "convert", MODEL, "--target", "onnx", "--int8-weights", "--out", str(tmp_path),
                         "--count", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    graph = onnx.load(str(tmp_path / f"{MODEL}.onnx")).graph
    assert not [n for n in graph.node if n.op_type == "QuantizeLinear"]  # activations stay float
    assert [i for i in graph.initializer if i.data_type == onnx.TensorProto.UINT8]  # weights: int8 values + 128
    assert result["artifact"]["size_bytes"] < 0.35 * 4 * sum(np.prod(i.dims) for i in graph.initializer)
    # verify, apart from the conversion, rebuilds the simulation from the plan beside the file
    code, out, err = run(capsys, "verify", str(tmp_path / f"{MODEL}.onnx"), "--model", MODEL, "--count", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["reference"] == "int8 simulation" and report["simulation"] is not None


def test_random_weights_without_calibration_data_calibrate_on_the_parity_photos(capsys, tmp_path):
    """The user's first kind of command on a random zoo model. Calibrated on 64 augmented photos, the
    MobileNetV3-Small file (0.889 to its simulation) could not be told from a wrong one and exited 1."""
    code, out, err = run(capsys, "convert", "mobilenet_v3_small", "--target", "onnx", "--int8", "--out", str(tmp_path),
                         "--json")
    assert code == 0, err
    assert "random weights: calibrated on the 8 bundled photos parity compares on" in err
    result = json.loads(out)
    assert result["artifact"]["quantization"]["calibration"] == "the 8 bundled photos parity compares on (random weights)"
    assert result["parity"]["reference"] == "int8 simulation" and result["parity"]["passed"]
    assert result["parity"]["simulation"]["artifact_vs_simulation_median_cosine"] > 0.99
