import json

import numpy as np
import onnx
import pytest
import torch

import edge_sdk
from edge_sdk import runtime
from edge_sdk.errors import ConversionError, OutputPathError


def test_artifact_and_manifest(mnv2_onnx):
    a = mnv2_onnx
    assert a.path.is_file() and a.size_bytes == a.path.stat().st_size
    assert a.target == "onnx" and a.precision == "fp32"
    assert [s.name for s in a.inputs] == ["input"] and a.inputs[0].shape == (1, 3, 224, 224)
    manifest = json.loads(a.manifest_path.read_text())
    assert manifest["model"]["name"] == "mobilenet_v2" and manifest["model"]["params"] == 3_504_872
    assert manifest["preprocessing"]["size"] == [224, 224]
    assert {"python", "torch", "onnx", "numpy", "edge-sdk"} <= set(manifest["versions"])
    assert manifest["options"]["opset"] == 18
    assert manifest["inputs"][0]["layout"] == "NCHW"


def test_weights_live_inside_the_file_and_nothing_stray_is_left(mnv2_onnx):
    folder = mnv2_onnx.path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["mobilenet_v2.onnx", "mobilenet_v2.onnx.json"]
    model = onnx.load(str(mnv2_onnx.path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sum(np.prod(t.dims) for t in model.graph.initializer) >= 3_400_000


def test_graph_is_clean_float_ops_with_module_paths(mnv2_onnx):
    model = onnx.load(str(mnv2_onnx.path))
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "Dropout" not in ops
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 52
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    meta = {p.key: p.value for p in first.metadata_props}
    assert "features.0.0" in meta.get("pkg.torch.onnx.name_scopes", "")


def test_parity_on_real_photos(mnv2_onnx):
    report = edge_sdk.check_parity("mobilenet_v2", mnv2_onnx)
    assert report.passed, report.to_json()
    (out,) = report.outputs
    assert out.min_cosine > 0.99999 and out.top1_agreement == 1.0 and out.samples == 8
    assert "real photographs" in report.sample_source


def test_opset_choice(tmp_path):
    artifact = edge_sdk.convert("mobilenet_v2_035", target="onnx", out=tmp_path, opset=20, input_shape=(1, 3, 64, 64))
    model = onnx.load(str(artifact.path))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 20
    with pytest.raises(ConversionError, match="opset 9 is outside"):
        edge_sdk.convert("mobilenet_v2_035", target="onnx", out=tmp_path / "x", opset=9)
    assert not (tmp_path / "x").exists()


def test_dynamic_batch(small_onnx):
    session = runtime.load(small_onnx.path)
    assert session.inputs[0].shape[0] is None
    model = edge_sdk.create_model("mobilenet_v2_035", img_size=96)
    x = np.random.default_rng(0).standard_normal((5, 3, 96, 96)).astype(np.float32)
    (y,) = session.run_raw([x])
    assert y.shape == (5, 1000)
    np.testing.assert_allclose(y, model(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_user_module_converts_and_runs(tmp_path):
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.nn.functional.gelu(self.bn(self.conv(x))).amax((2, 3))).softmax(-1)

    model = Tiny().eval()
    artifact = edge_sdk.convert(model, target="onnx", example_input=torch.randn(1, 1, 28, 28), out=tmp_path)
    assert artifact.path.name == "tiny.onnx"
    report = edge_sdk.check_parity(model, artifact)  # bundled photos, converted to grey, 28x28
    assert report.passed, report.to_json()


def test_one_capture_feeds_several_targets(tmp_path, monkeypatch):
    model = edge_sdk.create_model("mobilenet_v2_035", img_size=64)
    graph = edge_sdk.capture(model, torch.randn(1, 3, 64, 64), card=model.card)
    captures = []
    monkeypatch.setattr("edge_sdk.api.capture", lambda *a, **kw: captures.append(a))
    onnx_file = edge_sdk.convert(graph, target="onnx", out=tmp_path, labels=[f"class {i}" for i in range(1000)])
    tflite_file = edge_sdk.convert(graph, target="tflite", out=tmp_path, precision="int8", calibration=torch.randn(8, 3, 64, 64))
    assert captures == []  # both converted the one graph
    assert onnx_file.path.name == "mobilenet_v2_035.onnx" and runtime.load(onnx_file.path).info.labels[7] == "class 7"
    assert graph.card.labels == "imagenet"  # the labels went with that conversion only
    for artifact in (onnx_file, tflite_file):
        report = edge_sdk.check_parity(model, artifact, count=2)
        assert report.passed, report.to_json()
    with pytest.raises(edge_sdk.EdgeSDKError, match="captured graph has its input shape"):
        edge_sdk.convert(graph, target="onnx", out=tmp_path, input_shape=(1, 3, 32, 32))


def test_failed_conversion_leaves_no_file(tmp_path, monkeypatch):
    def broken_export(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(ConversionError, match="onnx: torch.onnx.export failed: exporter exploded"):
        edge_sdk.convert("mobilenet_v2_035", target="onnx", out=tmp_path, input_shape=(1, 3, 64, 64))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(OutputPathError, match="is a file in the way"):
        edge_sdk.convert("mobilenet_v2_035", target="onnx", out=blocker / "sub", input_shape=(1, 3, 64, 64))


def test_unknown_target_and_precision():
    with pytest.raises(ConversionError, match="unknown target 'caffe'"):
        edge_sdk.convert("mobilenet_v2_035", target="caffe")
    with pytest.raises(ConversionError, match="precision 'int4' is not available"):
        edge_sdk.convert("mobilenet_v2_035", target="onnx", precision="int4")
    with pytest.raises(ConversionError, match="unknown options nhwc"):
        edge_sdk.convert("mobilenet_v2_035", target="onnx", nhwc=True)
