"""TFLite converter: every zoo model through the real interpreter, and the file's structure.

Parity runs through `edge_sdk.runtime` (ai-edge-litert), exactly as a user deploys,
with XNNPACK (the default) and TFLite's builtin kernels without it. Structure checks read the file back with
the schema's object API. MobileNetV2 is captured once for the whole file.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from edge_sdk.converters import tflite
from torch import nn
from zoo import registry_params, zoo_model

import edge_sdk
from edge_sdk import runtime
from edge_sdk.api import capture_model, resolve_model
from edge_sdk.data import load_samples
from edge_sdk.errors import ConversionError

OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _read(path) -> tuple[object, list[tuple[str, object]]]:
    """The file as a ModelT, and its operators as (builtin name, OperatorT)."""
    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    codes = model.operatorCodes
    return model, [(OP_NAMES[codes[op.opcodeIndex].builtinCode], op) for op in model.subgraphs[0].operators]


@pytest.fixture(scope="module")
def mnv2():
    """MobileNetV2 (random weights, seed 0) and its captured graph, shared by the structure tests."""
    resolved = resolve_model("mobilenet_v2")
    return resolved.model, capture_model(resolved)


@pytest.mark.parametrize("name", registry_params())
def test_zoo_model_converts_to_tflite_with_fp32_parity(name, tmp_path):
    model, graph = zoo_model(name)
    artifact = edge_sdk.convert(graph, target="tflite", out=tmp_path)
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed, report.to_json()
    assert report.outputs[0].min_cosine > 0.99999
    photos = load_samples(None, model.card.preprocessing, 2)
    with_xnnpack = runtime.load(artifact.path).run(photos)[0]
    builtin = runtime.load(artifact.path, xnnpack=False).run(photos)[0]  # TFLite's own kernels
    assert np.abs(builtin - with_xnnpack).max() <= 1e-4 * np.abs(with_xnnpack).max()
    flat, ops = _read(artifact.path)
    producers = {t: name for name, op in ops for t in op.outputs}
    transposes = [op for name, op in ops if name == "TRANSPOSE"]
    assert not [op for op in transposes if producers.get(op.inputs[0]) == "TRANSPOSE"], "a pair of transposes"
    has_tokens = any(len(t.shape) == 3 for t in flat.subgraphs[0].tensors)  # attention / token-mixing models
    if not has_tokens:
        assert len(transposes) <= 1, "a CNN needs at most the input TRANSPOSE"


def test_mobilenet_v2_structure(mnv2, tmp_path):
    model, graph = mnv2
    artifact = tflite.convert(graph, tmp_path / "m.tflite")
    tfl, ops = _read(artifact.path)
    counts = Counter(name for name, _ in ops)
    assert counts["TRANSPOSE"] == 1
    assert counts["RELU6"] == counts["RELU"] == 0, "ReLU6 must be fused into the conv / add that feeds it"
    assert counts["CONV_2D"] + counts["DEPTHWISE_CONV_2D"] == graph.op_counts()["convolution.default"]
    graph_ = tfl.subgraphs[0]
    transpose = next(op for name, op in ops if name == "TRANSPOSE")
    assert transpose.inputs[0] == graph_.inputs[0], "the one TRANSPOSE converts the NCHW input"
    readers = {t: (name, op) for name, op in ops for t in op.inputs}
    for name, op in ops:
        if name == "PAD":
            consumer, conv = readers[op.outputs[0]]
            assert consumer in ("CONV_2D", "DEPTHWISE_CONV_2D") and conv.builtinOptions.strideH == 2
    fused = Counter(op.builtinOptions.fusedActivationFunction for name, op in ops if name.endswith("CONV_2D"))
    assert fused[schema.ActivationFunctionType.RELU6] == 35
    assert {OP_NAMES[c.builtinCode]: c.version for c in tfl.operatorCodes} == {
        name: 1 for name in ("TRANSPOSE", "PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED")
    }
    assert all(c.deprecatedBuiltinCode == min(c.builtinCode, 127) for c in tfl.operatorCodes)
    assert tfl.buffers[0].data is None
    first_conv = next(op for name, op in ops if name == "CONV_2D")
    assert list(graph_.tensors[first_conv.inputs[1]].shape) == [32, 3, 3, 3], "conv filters are OHWI"
    depthwise = next(op for name, op in ops if name == "DEPTHWISE_CONV_2D")
    assert list(graph_.tensors[depthwise.inputs[1]].shape) == [1, 3, 3, 32], "depthwise filters are 1HWC"
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed, report.to_json()


def test_nhwc_input_has_no_transpose(mnv2, tmp_path):
    model, graph = mnv2
    artifact = tflite.convert(graph, tmp_path / "m.tflite", nhwc_input=True)
    _, ops = _read(artifact.path)
    assert "TRANSPOSE" not in {name for name, _ in ops}
    assert artifact.inputs[0].layout == "NHWC" and artifact.inputs[0].shape == (1, 224, 224, 3)
    session = runtime.load(artifact.path)
    assert session.inputs[0].layout == "NHWC"  # read from the manifest: the Session transposes for the caller
    assert edge_sdk.check_parity(model, session, count=2).passed


def test_fp16_weights_halve_the_file(mnv2, tmp_path):
    model, graph = mnv2
    fp32 = tflite.convert(graph, tmp_path / "f32.tflite")
    fp16 = tflite.convert(graph, tmp_path / "f16.tflite", precision="fp16")
    assert 0.45 < fp16.size_bytes / fp32.size_bytes < 0.55
    tfl, ops = _read(fp16.path)
    dequantize = [op for name, op in ops if name == "DEQUANTIZE"]
    assert dequantize and all(tfl.subgraphs[0].tensors[op.inputs[0]].type == schema.TensorType.FLOAT16 for op in dequantize)
    assert {OP_NAMES[c.builtinCode]: c.version for c in tfl.operatorCodes}["DEQUANTIZE"] == 3
    for xnnpack, count in ((True, 4), (False, 2)):
        report = edge_sdk.check_parity(model, runtime.load(fp16.path, xnnpack=xnnpack), count=count)
        assert report.passed and report.precision == "fp16", report.to_json()


def test_fp16_parity_on_a_transformer(tmp_path):
    model = edge_sdk.create_model("cct_2_3x2_32")
    artifact = edge_sdk.convert(model, target="tflite", precision="fp16", out=tmp_path)
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed, report.to_json()
    assert report.outputs[0].min_cosine > 0.999


def test_signature_runner(mnv2, tmp_path):
    _, graph = mnv2
    artifact = tflite.convert(graph, tmp_path / "m.tflite")
    x = graph.example_inputs[0].numpy()
    runner = Interpreter(model_path=str(artifact.path)).get_signature_runner("serving_default")
    out = runner(input=x)
    assert set(out) == {"output"}
    np.testing.assert_allclose(out["output"], runtime.load(artifact.path).run(x)[0], rtol=1e-5, atol=1e-5)


class _OpZoo(nn.Module):
    """Lowerings no zoo model uses: grouped conv, avg pools, slice, cat, sub, tanh, softmax over channels."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.fc = nn.Linear(8, 5, bias=False)

    def forward(self, x):
        x = torch.cat([x, x[:, :1] - 0.5], dim=1)  # 4 channels
        y = self.grouped(x).tanh()
        y = torch.cat([nn.functional.avg_pool2d(y, 3, 2, padding=1), nn.functional.avg_pool2d(y, 2)[:, :, 1::2]], dim=2)
        y = torch.softmax(y, dim=1) * nn.functional.gelu(y, approximate="tanh")
        return self.fc(y.mean(dim=(2, 3)).unsqueeze(1).squeeze(1))


def test_ops_outside_the_zoo(tmp_path):
    model = _OpZoo().eval()
    artifact = edge_sdk.convert(model, target="tflite", example_input=torch.randn(1, 3, 16, 16), out=tmp_path)
    for xnnpack in (True, False):
        report = edge_sdk.check_parity(model, runtime.load(artifact.path, xnnpack=xnnpack), count=2)
        assert report.passed, report.to_json()


class _Cumsum(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1)


class _WithUnsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.odd = _Cumsum()

    def forward(self, x):
        return self.odd(self.conv(x))


def test_unsupported_op_names_op_and_module_and_leaves_no_file(tmp_path):
    with pytest.raises(ConversionError) as err:
        edge_sdk.convert(_WithUnsupported().eval(), target="tflite", example_input=torch.randn(1, 3, 8, 8), out=tmp_path / "out")
    assert "cumsum" in err.value.message and "'odd'" in err.value.message
    assert err.value.hint
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("xnnpack", [True, False])
def test_a_float_mean_over_a_large_map_is_as_exact_as_pytorch(xnnpack, tmp_path):
    """TFLite's MEAN sums in order: over a 228x228 squeeze-excite map of cancelling terms it left EfficientNet-B5's
    fp32 file 2e-4 from float64 (PyTorch: 8e-6), failing parity; the innermost axis is now reduced first."""
    class SqueezeMean(nn.Module):
        def forward(self, x):
            return (x * torch.sigmoid(x)).mean((2, 3)) - 0.2

    x = np.random.default_rng(0).standard_normal((2, 8, 228, 228)).astype(np.float32)
    artifact = tflite.convert(edge_sdk.capture(SqueezeMean(), (torch.from_numpy(x[:1]),)), tmp_path / "m.tflite")
    got = runtime.load(artifact.path, xnnpack=xnnpack).run(x)[0]
    x64 = x.astype(np.float64)
    exact = (x64 / (1 + np.exp(-x64))).mean((2, 3)) - 0.2
    with torch.no_grad():
        pytorch = SqueezeMean()(torch.from_numpy(x)).numpy()
    error, pytorch_error = (float(np.abs(y - exact).max() / np.abs(exact).max()) for y in (got, pytorch))
    assert error < 4 * pytorch_error + 1e-7, (error, pytorch_error)
