"""Quantisation: plan rules, observers, serialisation, calibration sources, simulation vs onnxruntime int8."""

from __future__ import annotations

import collections
import operator
import warnings

import numpy as np
import onnxruntime as ort  # noqa: E402  (dev extra: a missing install must fail, not skip)
import pytest
import torch
from edge_sdk.quantize import (
    CalibrationWarning,
    PlanError,
    QuantPlan,
    QuantRecipe,
    RecipeError,
    layer_sensitivity,
    quantize,
)
from edge_sdk.quantize.observers import TensorStats, affine_qparams
from torch import nn

import edge_sdk
from edge_sdk.errors import DataError
from edge_sdk.graph import capture


class Rules(nn.Module):
    """One of each rule: conv+ReLU6 fusion, max-pool / concat / reshape sharing, sigmoid, hard-swish, softmax."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU6()
        self.pool = nn.MaxPool2d(2)
        self.side = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.hs = nn.Hardswish()
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        a = self.pool(self.act(self.conv(x)))
        b = self.hs(self.side(x))
        y = torch.cat([a, torch.sigmoid(b)], dim=1)
        y = nn.functional.max_pool2d(y, 2).reshape(y.shape[0], -1)
        return torch.softmax(self.fc(y), dim=1)


@pytest.fixture(scope="module")
def rules_model():
    torch.manual_seed(0)
    graph = capture(Rules().eval(), torch.randn(1, 3, 16, 16))
    calib = torch.randn(32, 3, 16, 16).numpy()
    return graph, calib, quantize(graph, calib, QuantRecipe(observer="minmax"))


def _onnx_int8_cosines_to_simulation(graph, qmodel, x, tmp_path):
    """The int8 ONNX file of `qmodel`'s plan, and its cosines to the simulation on x[:8] (onnxruntime's defaults)."""
    from edge_sdk.converters import onnx as onnx_converter

    artifact = onnx_converter.convert(graph, tmp_path / "m.onnx", precision="int8", plan=qmodel.plan)
    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(8)])
    sim = qmodel.predict(x[:8])
    return artifact, np.sum(got * sim, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(sim, axis=1)


def _by_target(graph, target):
    return [n.name for n in graph.module.graph.nodes if n.op == "call_function" and n.target is target]


def test_plan_rules(rules_model):
    graph, _, qmodel = rules_model
    plan, aten = qmodel.plan, torch.ops.aten
    conv = _by_target(graph, aten.convolution.default)[0]
    relu6 = _by_target(graph, aten.hardtanh.default)[0]
    assert plan.fused[conv] == relu6 and conv not in plan.activations  # conv shares the post-ReLU6 range
    assert plan.activations[relu6].zero_point == -128
    qparams = {name: (a.scale, a.zero_point) for name, a in plan.activations.items()}
    sigmoids = _by_target(graph, aten.sigmoid.default)
    cat = graph.module.graph.find_nodes(op="call_function", target=aten.cat.default)[0]
    # concat inputs and output share qparams, except a fixed-range (sigmoid) input, which is requantised
    assert len({qparams[n] for n in [cat.name, *(a.name for a in cat.args[0])] if n not in sigmoids}) == 1
    assert len({qparams[n] for n in [cat.name, *(a.name for a in cat.args[0])]}) == 2
    pools = [n for n in graph.module.graph.nodes if n.op == "call_function" and n.target is operator.getitem]
    for pool in pools:  # max-pool output (getitem of max_pool2d_with_indices) shares its input's qparams
        assert qparams[pool.name] == qparams[pool.args[0].args[0].name]
    for sig in _by_target(graph, aten.sigmoid.default):
        assert plan.activations[sig].rule == "fixed:sigmoid"
    for sm in _by_target(graph, aten._softmax.default):
        assert (plan.activations[sm].scale, plan.activations[sm].zero_point) == (1 / 256, -128)
    hardswish = [n.name for n in graph.module.graph.nodes if plan.module_of(n.name) == "hs"]
    assert [n for n in hardswish if n not in plan.fused] == hardswish[-1:]  # one int8 tensor for hard-swish
    for w in plan.weights.values():
        assert w.bias_scales is not None
        np.testing.assert_allclose(w.bias_scales, np.float32(plan.activations[w.input].scale) * np.asarray(w.scales, np.float32), rtol=1e-6)
    assert plan.module_of(conv) == "conv"


def test_plan_json_is_byte_identical_and_round_trips(rules_model, tmp_path):
    graph, calib, qmodel = rules_model
    again = quantize(graph, calib, QuantRecipe(observer="minmax"))
    assert qmodel.plan.to_json() == again.plan.to_json()
    path = qmodel.save_plan(tmp_path / "plan.json")
    assert QuantPlan.load(path).to_json() == qmodel.plan.to_json()


@pytest.mark.parametrize("text", ["{not json", '{"format": "something else"}',
                                  '{"format": "edge-sdk.quantplan", "version": 1, "recipe": {}}'])
def test_corrupt_plan_is_a_clear_error(tmp_path, text):
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(PlanError) as info:
        QuantPlan.load(path)
    assert str(path) in str(info.value)


def test_plan_with_invalid_qparams_is_rejected(rules_model):
    data = rules_model[2].plan.to_dict()
    name = next(iter(data["activations"]))
    data["activations"][name][0] = -1.0
    import json

    with pytest.raises(PlanError, match="invalid int8 qparams"):
        QuantPlan.from_json(json.dumps(data))


def test_recipe_rejects_unknown_values():
    with pytest.raises(RecipeError, match="observer"):
        QuantRecipe(observer="kl")


def test_observers_include_zero_and_clip_outliers():
    stats = TensorStats()
    x = torch.cat([torch.rand(100_000) + 1.0, torch.tensor([50.0])])  # all positive, one outlier
    stats.update(x)
    lo, hi = stats.choose("minmax")
    assert (lo, hi) == (0.0, 50.0)
    assert stats.choose("percentile")[1] < 3.0
    assert stats.choose("mse")[1] < 50.0
    scale, zp = affine_qparams(-1.0, 3.0)
    assert zp in range(-128, 128) and abs(-1.0 - (-128 - zp) * scale) < scale


def test_one_pass_histogram_matches_the_whole_data_when_the_range_grows():
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(200_000, generator=gen) * s for s in (0.5, 1.0, 3.0)]  # the range widens twice
    streamed, whole = TensorStats(), TensorStats()
    for b in batches:
        streamed.update(b)
    whole.update(torch.cat(batches))
    assert (streamed.lo, streamed.hi) == (whole.lo, whole.hi)
    width = (whole.hi - whole.lo) / 2048
    for observer in ("percentile", "mse"):
        assert np.allclose(streamed.choose(observer), whole.choose(observer), atol=4 * width)


def test_calibration_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    graph = capture(nn.Conv2d(3, 4, 3).eval(), torch.randn(1, 3, 16, 16))
    with pytest.raises(DataError, match="no readable image"):
        quantize(graph, tmp_path)


def test_calibration_that_overflows_float32_names_the_tensor():
    """A random RedNet-50 reached inf on augmented photos, and calibration died in torch.histc."""
    class Squares(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x) * 1e30
            return y * y

    graph = capture(Squares().eval(), torch.randn(1, 3, 8, 8))
    with pytest.raises(DataError, match=r"tensor 'mul_1' .*not finite.*overflows float32") as error:
        quantize(graph, np.ones((4, 3, 8, 8), np.float32))
    assert "preprocessed" in error.value.hint


def test_default_calibration_warns_with_sample_count():
    graph = capture(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval(), torch.randn(1, 3, 32, 32))
    with pytest.warns(CalibrationWarning, match=r"16 augmented bundled photos.*deployment domain"):
        quantize(graph, None, QuantRecipe(calibration_samples=16))


def test_random_zoo_weights_calibrate_on_the_parity_photos():
    """No deployment domain to calibrate for: the ranges come from the images parity judges the file on."""
    from edge_sdk.data import photo_batch

    model = edge_sdk.create_model("lenet5")
    graph = capture(model, torch.randn(1, *model.card.input_size))
    assert graph.random_weights
    with pytest.warns(CalibrationWarning, match=r"random weights: calibrated on the 8 bundled photos parity compares on"):
        default = quantize(graph, None)
    assert default.calibration == "the 8 bundled photos parity compares on (random weights)"
    explicit = quantize(graph, photo_batch(model.card.preprocessing))
    assert default.plan.activations == explicit.plan.activations
    with pytest.warns(CalibrationWarning, match=r"augmented bundled photos"):  # trained weights keep the stand-in set
        graph.random_weights = False
        assert quantize(graph, None).plan.activations != explicit.plan.activations


def test_calibration_from_iterable_and_npy(tmp_path):
    graph = capture(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval(), torch.randn(1, 3, 16, 16))
    samples = torch.randn(10, 3, 16, 16)
    np.save(tmp_path / "calib.npy", samples.numpy())
    from_iter = quantize(graph, (samples[i] for i in range(10))).plan.to_json()
    from_npy = quantize(graph, tmp_path / "calib.npy").plan.to_json()
    assert from_iter == from_npy


def test_schemes_and_keep_float(rules_model):
    graph, calib, _ = rules_model
    x = torch.from_numpy(calib[:1])
    ref = graph(x)[0]
    for scheme in ("int8-weights", "fp16"):
        out = quantize(graph, calib, QuantRecipe(scheme=scheme))(x)[0]
        assert torch.allclose(out, ref, atol=2e-2), scheme
    kept = quantize(graph, calib, QuantRecipe(keep_float=("fc",)))
    assert "fc" not in {kept.plan.module_of(n) for n in kept.plan.weights}


def test_sensitivity_names_torch_modules_worst_first(rules_model):
    graph, calib, qmodel = rules_model
    report = layer_sensitivity(graph, qmodel.plan, calib[:16])
    assert {s.module for s in report.layers} == {"conv", "side", "fc"}
    assert [s.sqnr_db for s in report.layers] == sorted(s.sqnr_db for s in report.layers)


def test_auto_mode_keeps_layers_float_until_budget(rules_model):
    graph, calib, _ = rules_model
    recipe = QuantRecipe(observer="minmax")
    assert not quantize(graph, calib, recipe, max_accuracy_drop=100.0).plan.float_nodes
    # An impossible budget keeps every weighted layer float, most sensitive first.
    assert set(quantize(graph, calib, recipe, max_accuracy_drop=-1.0).plan.float_nodes) >= {"convolution", "convolution_1", "addmm"}


def test_onnx_int8_runs_integer_kernels_and_matches_simulation(tmp_path):
    """MobileNetV2: the QDQ file runs as QLinearConv / QLinearAdd / QGemm and agrees with the simulation."""
    torch.manual_seed(0)
    model = edge_sdk.create_model("mobilenet_v2_035", num_classes=10, img_size=32)
    graph = capture(model, torch.randn(1, 3, 32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        qmodel = quantize(graph, None, QuantRecipe(calibration_samples=32))
    from edge_sdk.converters import onnx as onnx_converter

    artifact = onnx_converter.convert(graph, tmp_path / "m.onnx", precision="int8", plan=qmodel.plan)
    # onnxruntime's default options, as a user's app has: the file is exact by itself. With int8 weights, x86 CPUs
    # without VNNI saturate in u8s8 kernels (cosine 0.95 here on an AVX2 EPYC) unless session_options() is used.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    session = ort.InferenceSession(str(artifact.path), options, providers=["CPUExecutionProvider"])
    import onnx

    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node)
    assert ops["QLinearConv"] == 52 and ops["QLinearAdd"] == 10 and ops["QGemm"] == 1
    assert not {"Conv", "Add", "Gemm", "MatMul"} & set(ops)
    x = torch.from_numpy(edge_sdk.data.photo_batch(edge_sdk.data.Preprocessing((32, 32)), 8))
    got = np.concatenate([session.run(None, {"input": x[i : i + 1].numpy()})[0] for i in range(len(x))])
    sim = qmodel(x)[0].numpy()
    from edge_sdk.quantize.sensitivity import sqnr_db

    assert sqnr_db(sim, got) > 25.0  # runtime vs simulation: integer rounding only (random weights amplify it)
    weights = [i for i in onnx.load(str(artifact.path)).graph.initializer if i.name.endswith("_quantized") and i.data_type == 2]
    assert len(weights) == 53  # uint8: the plan's [-127, 127] + 128 (u8u8 kernels, no saturation)


def test_a_layout_op_after_softmax_keeps_its_fixed_range_and_onnxruntime_computes_the_plan(tmp_path):
    """CCT: softmax (fixed 1/256) -> expand -> the attention matmul. The expand shares softmax's range; before,
    it had its own and the file held Q/DQ/Q/DQ, which onnxruntime's optimiser collapsed into one rounding, so
    the file left the plan (CCT-14/7x2 at 384 px: cosine 0.85 to the simulation, 0.9997 unoptimised)."""
    model = edge_sdk.create_model("cct_2_3x2_32")
    artifact = edge_sdk.convert(model, target="onnx", precision="int8", out=tmp_path)
    plan = artifact.simulation.plan
    softmax, expand = plan.activations["_softmax"], plan.activations["expand_2"]
    assert (expand.scale, expand.zero_point) == (softmax.scale, softmax.zero_point) == (np.float32(1 / 256), -128)
    import onnx

    quantize_ops = {n.name for n in onnx.load(str(artifact.path)).graph.node if n.op_type == "QuantizeLinear"}
    assert "_softmax_quantize" in quantize_ops and "expand_2_quantize" not in quantize_ops
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed and report.simulation.artifact_vs_simulation_cosine > 0.999, report.to_json()


class _SoftmaxJoinsConvOutput(nn.Module):
    """softmax -> expand (same shape: the exporter drops it) -> concat with a conv output: one group whose range
    is the conv's, so softmax's 1/256 stays out of it and must be requantised where the expand was."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        return self.head(torch.cat([y.softmax(1).expand(y.shape), y], 1)).mean((2, 3))


def test_onnx_int8_requantises_a_fixed_range_the_exporter_removed(tmp_path):
    model = _SoftmaxJoinsConvOutput().eval()
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    graph = capture(model, torch.from_numpy(x[:1]))
    qmodel = quantize(graph, x, QuantRecipe(calibration_samples=16))
    assert qmodel.plan.activations["expand"].scale != qmodel.plan.activations["_softmax"].scale
    artifact, cosines = _onnx_int8_cosines_to_simulation(graph, qmodel, x, tmp_path)
    import onnx

    quantize_ops = {n.name for n in onnx.load(str(artifact.path)).graph.node if n.op_type == "QuantizeLinear"}
    ops = {n.op_type for n in onnx.load(str(artifact.path)).graph.node}
    assert "Expand" not in ops and {"expand_quantize", "_softmax_quantize"} <= quantize_ops  # the requantisation stands in
    assert cosines.min() > 0.999, cosines


def test_onnx_int8_weights_of_a_transformer_keeps_the_plans_names(tmp_path):
    """CCT's bias-free linear layers are view -> mm -> view: the exporter's rewrites merged them into one MatMul named
    after the view, and the plan's `mm` weights were not found; int8 files are now only constant-folded."""
    import onnx

    model = edge_sdk.create_model("cct_2_3x2_32")
    artifact = edge_sdk.convert(model, target="onnx", precision="int8-weights", out=tmp_path)
    graph = onnx.load(str(artifact.path)).graph
    quantized = [i.name for i in graph.initializer if i.name.endswith("_quantized")]
    assert len(quantized) == len(artifact.simulation.plan.weights)  # every weighted layer stored as int8
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed and report.outputs[0].min_cosine > 0.9999, report.to_json()


class _SharedWeights(nn.Module):
    """Perceiver's pattern: one linear layer applied twice (to inputs of different ranges) and the same LayerNorm
    of the same tensor computed twice, which the ONNX exporter merges into one value."""

    def __init__(self):
        super().__init__()
        self.embed, self.norm = nn.Linear(3, 16), nn.LayerNorm(16)
        self.shared, self.head = nn.Linear(16, 16), nn.Linear(16, 5)

    def forward(self, x):
        data = self.embed(x.flatten(2).transpose(1, 2))
        y = self.shared(self.norm(data))
        y = self.shared(3 * torch.relu(y) + self.norm(data))
        return self.head(y.mean(1))


@pytest.mark.parametrize("target", ["onnx", "coreml"])
def test_int8_of_a_weight_shared_by_two_layers_passes_parity(target, tmp_path):
    """perceiver_p2_64 failed ONNX int8 with KeyError 'permute_1' (the shared weight's transpose stood as a node,
    and the merged LayerNorm got two Q/DQ pairs) and CoreML int8 with 'weight ... is not in the graph'."""
    model = _SharedWeights().eval()
    x = np.random.default_rng(0).standard_normal((16, 3, 2, 2)).astype(np.float32)
    artifact = edge_sdk.convert(model, target=target, precision="int8", out=tmp_path, example_input=torch.from_numpy(x[:1]),
                                calibration=x)
    plan = artifact.simulation.plan
    assert len({w.weight for w in plan.weights.values()}) < len(plan.weights)  # the shared layer has two entries
    assert len({w.bias_scales for w in plan.weights.values()}) == len(plan.weights)  # on two int32 grids
    report = edge_sdk.check_parity(model, artifact, samples=x[:8])
    assert report.passed and report.simulation.artifact_vs_simulation_cosine > 0.999, report.to_json()


def test_onnx_int8_finds_the_batch_norm_and_max_pool_outputs_the_exporter_renumbered(tmp_path):
    """A BatchNorm that follows no conv stays in the graph (RedNet's after each involution), read through getitem as a
    max pool is; the exporter numbers those getitems afresh, so rednet26's int8 export lacked 9 of them."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
            self.norm, self.pool, self.head = nn.BatchNorm2d(8), nn.MaxPool2d(2), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))  # folded into the conv: a gap in the getitem numbers
            return self.head(self.pool(torch.relu(self.norm(y * y)))).mean((2, 3))

    model = Block().eval()
    x = np.random.default_rng(0).standard_normal((16, 3, 10, 10)).astype(np.float32)
    graph = capture(model, torch.from_numpy(x[:1]))
    qmodel = quantize(graph, x, QuantRecipe(calibration_samples=16))
    _, cosines = _onnx_int8_cosines_to_simulation(graph, qmodel, x, tmp_path)
    assert cosines.min() > 0.999, cosines


def test_onnx_int8_finds_a_batch_norm_that_reads_a_concat_of_one_tensor(tmp_path):
    """DenseNet's first layer of a block normalises torch.cat([features]): the exporter drops that concat, so
    the BatchNormalization reads the pool's output and its getitem was not found (densenet121: 'lacks getitem_266')."""
    class DenseStart(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.pool = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.AvgPool2d(2)
            self.norm, self.head = nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            features = self.pool(torch.relu(self.bn(self.conv(x))))  # folded into the conv: a gap in the getitem numbers
            return self.head(torch.relu(self.norm(torch.cat([features], 1)))).mean((2, 3))

    model = DenseStart().eval()
    with torch.no_grad():
        model.norm.running_mean.uniform_(-0.5, 0.5), model.norm.running_var.uniform_(0.5, 2)
    x = np.random.default_rng(0).standard_normal((16, 3, 10, 10)).astype(np.float32)
    graph = capture(model, torch.from_numpy(x[:1]))
    qmodel = quantize(graph, x, QuantRecipe(calibration_samples=16))
    _, cosines = _onnx_int8_cosines_to_simulation(graph, qmodel, x, tmp_path)
    assert cosines.min() > 0.999, cosines


def test_onnx_int8_finds_the_layer_norm_outputs_the_exporter_renumbered(tmp_path):
    """Folding BatchNorm leaves gaps in the FX graph's getitem numbers; the exporter numbers afresh, so the
    LayerNorm output the plan calls getitem_3 is getitem in the file (MobileViT: getitem_63 vs getitem_12)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(2), nn.LayerNorm(36),
                          nn.Flatten(), nn.Linear(288, 10)).eval()
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    graph = capture(model, torch.from_numpy(x[:1]))
    qmodel = quantize(graph, x, QuantRecipe(calibration_samples=16))
    (norm,) = [n for n in graph.nodes if n.target is torch.ops.aten.native_layer_norm.default]
    assert [u.name for u in norm.users if u.name in qmodel.plan.activations] != ["getitem"]  # numbered otherwise
    _, cosines = _onnx_int8_cosines_to_simulation(graph, qmodel, x, tmp_path)
    assert cosines.min() > 0.999, cosines


def test_onnx_int8_covers_a_concat_of_one_tensor(tmp_path):
    """LeNet-5's C3 map reading all six S2 maps is a concat of one slice; the exporter drops it (an identity), and the
    plan's `cat_2` is covered by its source's Q/DQ instead of failing as a tensor the file lacks."""
    model = edge_sdk.create_model("lenet5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        artifact = edge_sdk.convert(model, target="onnx", precision="int8", out=tmp_path)
    assert "cat_2" in artifact.simulation.plan.activations
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed and report.simulation.artifact_vs_simulation_cosine > 0.999, report.to_json()
