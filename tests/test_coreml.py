"""CoreML: every zoo model converts to an .mlpackage and passes parity through the runtime.

Off macOS the runtime runs edge-sdk's reference interpreter of the ML Program, so
these tests prove the saved program itself (its ops, weights and declared dtypes).
int8-weights takes a weights-only QuantPlan (no pass over data); W8A8 takes a
QuantPlan made on the bundled photos.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from edge_sdk.converters import TARGETS, coreml
from edge_sdk.quantize import ActQuant, QuantPlan, QuantRecipe
from zoo import default_models, registry_params, zoo_model

import edge_sdk
from edge_sdk.errors import ConversionError, OutputPathError
from edge_sdk.graph import capture
from edge_sdk.runtime import load
from edge_sdk.runtime.mil_interpreter import Program, UnsupportedOpError, round_to_fp16

REFERENCE = "coreml" if sys.platform == "darwin" else "coreml-reference"


def _graph(model):
    return capture(model, (torch.randn(1, *model.card.input_size),), card=model.card)


# The numpy interpreter runs every op in Python: the two largest default models take minutes here.
LARGEST_DEFAULT = ("vit_tiny_patch16_224", "alexnet")
# int8-weights by default for the mobile families (the ones phones get); every model with `-m slow`.
INT8_WEIGHTS_DEFAULT = {"mobilenet_v2_035", "mobilenet_v3_small_075", "efficientnet_lite0", "mobilevit_xxs"}


@pytest.mark.parametrize("name", registry_params(slow=LARGEST_DEFAULT))
def test_zoo_model_converts_to_coreml_fp16_with_parity(name, tmp_path):
    _check_zoo_model(name, "fp16", tmp_path)


@pytest.mark.parametrize("name", registry_params(slow=tuple(default_models() - INT8_WEIGHTS_DEFAULT)))
def test_zoo_model_converts_to_coreml_int8_weights_with_parity(name, tmp_path):
    _check_zoo_model(name, "int8-weights", tmp_path)


def _check_zoo_model(name: str, precision: str, tmp_path) -> None:
    model, graph = zoo_model(name)
    artifact = edge_sdk.convert(graph, "coreml", precision=precision, out=tmp_path / f"{name}_{precision}.mlpackage")
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.backend == REFERENCE
    assert report.passed, report.to_json()


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "cct_2_3x2_32", pytest.param("efficientnet_lite0", marks=pytest.mark.slow),
                                  pytest.param("mobilevit_xxs", marks=pytest.mark.slow)])
def test_fp32_parity_is_float_rounding(name, tmp_path):
    model = edge_sdk.create_model(name)
    artifact = edge_sdk.convert(model, target="coreml", precision="fp32", out=tmp_path)
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed, report.to_json()
    assert report.outputs[0].max_rel <= 1e-4


def test_package_is_a_folder_with_a_manifest_and_reconverts_in_place(tmp_path):
    out = tmp_path / "m.mlpackage"
    model = edge_sdk.create_model("mobilenet_v2_035", img_size=64)
    model = edge_sdk.capture(model, torch.zeros(1, 3, 64, 64), card=model.card)  # one capture for the three files
    first = edge_sdk.convert(model, target="coreml", out=out, precision="fp16")
    again = edge_sdk.convert(model, target="coreml", out=out, precision="fp16", min_target="iOS16")
    assert out.is_dir() and (out / "Manifest.json").is_file()
    manifest = json.loads(again.manifest_path.read_text())
    assert manifest["target"] == "coreml" and manifest["precision"] == "fp16" and manifest["options"]["min_target"] == "iOS16"
    assert len(manifest["sha256"]) == 64 and first.manifest_path == again.manifest_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage", "m.mlpackage.json"]  # no staging left
    assert load(out).inputs[0].dtype == "float32" and load(out).outputs[0].shape == (1, 1000)
    assert again.size_bytes == sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert TARGETS["coreml"].suffix == ".mlpackage" and TARGETS["coreml"].backend == "coreml"
    if sys.platform != "darwin":  # latency needs Apple's runtime: bench stops before timing anything
        tflite = edge_sdk.convert(model, target="tflite", out=tmp_path / "m.tflite")
        done = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "bench", str(tflite.path), str(out), "--compare"],
                              capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2 and "needs a Mac" in done.stderr and "edge-sdk verify" in done.stderr
        assert not (tmp_path / "edge-sdk-out").exists(), "no plot of a half-done comparison"


class _FlattenByShape(torch.nn.Module):
    """`view(b, c, h * w)` from the input's shape: traced eagerly, h * w becomes an aten::Int node."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        return y.view(b, c, h * w).mean(-1)


def test_trace_fallback_is_safe_from_the_numpy_2_4_trap(tmp_path, monkeypatch):
    """coremltools 9.0's TorchScript frontend casts aten::Int with int() on a 1-element array, which numpy >= 2.4
    rejects (coremltools #2633). Our fallback (when a re-export fails) traces the captured graph, whose shapes are
    constants, so no aten::Int reaches coremltools and the file converts and passes parity with any numpy."""
    import coremltools as ct

    torch.manual_seed(0)
    model, x = _FlattenByShape().eval(), torch.randn(1, 3, 8, 8)
    if np.lib.NumpyVersion(np.__version__) >= "2.4.0":  # the trap itself, on the model's own trace
        with pytest.raises(TypeError, match="0-dimensional"):
            ct.convert(torch.jit.trace(model, (x,)), inputs=[ct.TensorType(name="x", shape=x.shape, dtype=np.float32)],
                       convert_to="mlprogram", skip_model_load=True)
    graph = capture(model, (x,))
    calls = []

    def export_fails(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("re-export failed (test)")

    monkeypatch.setattr(type(graph), "unchanged_program", lambda self: None)  # as for a graph edited after capture
    monkeypatch.setattr(torch.export, "export", export_fails)
    artifact = edge_sdk.convert(graph, "coreml", precision="fp32", out=tmp_path / "m.mlpackage")
    assert calls, "the fallback was not reached"
    report = edge_sdk.check_parity(model, artifact, np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32))
    assert report.passed and report.outputs[0].max_rel <= 1e-4, report.to_json()


def test_interpreter_rounds_fp16_programs_like_numpy():
    x = (np.random.default_rng(0).standard_normal(100_000) * 10.0 ** np.random.default_rng(1).uniform(-9, 4, 100_000))
    x = x.astype(np.float32)
    assert np.array_equal(round_to_fp16(x), x.astype(np.float16).astype(np.float32))


def _plan(graph, scales: dict[str, float]) -> QuantPlan:
    return QuantPlan(QuantRecipe(), activations={n: ActQuant(s, 0, "observed:test") for n, s in scales.items()})


class _Reshape(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x).reshape(1, -1) + 0.5


def test_int_op_canonicalization_corrupts_requantised_reshape(tmp_path, monkeypatch):
    """dequantize(s1) -> reshape -> quantize(s2) must rescale; the pass makes it an int8 reshape read with s2."""
    x = torch.linspace(-1, 1, 16).reshape(1, 4, 2, 2)
    graph = capture(_Reshape(), (x,))
    names = [n.name for n in graph.module.graph.nodes if n.op == "call_function"]
    relu, view = names[0], names[1]
    plan = _plan(graph, {relu: 1 / 127, view: 1 / 64})
    good = coreml.convert(graph, tmp_path / "good.mlpackage", precision="int8", plan=plan)
    monkeypatch.setattr(coreml, "UNSAFE_QUANTIZED_PASSES", ())
    kept = coreml.convert(graph, tmp_path / "kept.mlpackage", precision="int8", plan=plan)
    q1 = torch.clamp(torch.round(torch.relu(x) * 127), -128, 127) / 127
    graph_output = (torch.clamp(torch.round(q1.reshape(1, -1) * 64), -128, 127) / 64 + 0.5).numpy()
    right = load(good.path).run(x.numpy())[0]
    wrong = load(kept.path).run(x.numpy())[0]
    assert np.abs(right - graph_output).max() < 1e-6
    assert np.abs(wrong - graph_output).max() > 0.3  # int8 values of scale 1/127 read as 1/64: about twice as large
    ops = {op.type for op in load(kept.path)._program._ops}
    assert "reshape" in ops and good.options["removed_passes"] == ["common::int_op_canonicalization"]


def test_w8a8_from_plan_places_quantize_ops_and_tracks_the_simulation(tmp_path):
    from edge_sdk.quantize import quantize

    model = edge_sdk.create_model("mobilenet_v2_035", img_size=96)
    graph = capture(model, (torch.randn(1, 3, 96, 96),), card=model.card)
    qmodel = quantize(graph, np.random.default_rng(0).standard_normal((8, 3, 96, 96)).astype(np.float32),
                      QuantRecipe(calibration_samples=8))
    artifact = coreml.convert(graph, tmp_path / "w8a8.mlpackage", precision="int8", plan=qmodel.plan)
    session = load(artifact.path)
    ops = [op.type for op in session._program._ops]
    assert ops.count("quantize") == len(qmodel.plan.activations)
    assert artifact.options["min_target"] == "iOS17"
    x = np.random.default_rng(1).standard_normal((2, 3, 96, 96)).astype(np.float32)
    simulated = qmodel(torch.from_numpy(x))
    simulated = (simulated[0] if isinstance(simulated, tuple) else simulated).detach().numpy()
    out = session.run(x)[0]
    cosine = (out * simulated).sum() / np.linalg.norm(out) / np.linalg.norm(simulated)
    assert cosine > 0.95


def test_int8_weights_hold_the_plans_integers_for_every_layer(tmp_path):
    """The weights-only plan's integers and scales go into the file as they are (coremltools'
    linear_quantize_weights re-decided them and left depthwise filters in fp16: cosine 0.898 to the plan)."""
    import coremltools
    from edge_sdk.quantize import quantize

    model = edge_sdk.create_model("mobilenet_v2_035", img_size=64)
    graph = capture(model, (torch.randn(1, 3, 64, 64),), card=model.card)
    qmodel = quantize(graph, None, QuantRecipe(scheme="int8-weights"))
    artifact = coreml.convert(graph, tmp_path / "w8.mlpackage", precision="int8-weights", plan=qmodel.plan)
    assert artifact.options["min_target"] == "iOS16"
    main = coremltools.models.MLModel(str(artifact.path), skip_model_load=True).get_spec().mlProgram.functions["main"]
    ops = [op.type for block in main.block_specializations.values() for op in block.operations]
    assert ops.count("constexpr_affine_dequantize") == len(qmodel.plan.weights) == 53
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    simulated = qmodel(torch.from_numpy(x))
    simulated = (simulated[0] if isinstance(simulated, tuple) else simulated).detach().numpy()
    out = load(artifact.path).run(x)[0]
    assert (out * simulated).sum() / np.linalg.norm(out) / np.linalg.norm(simulated) > 0.99


def test_unknown_op_fails_with_its_name(tmp_path):
    class Atan(torch.nn.Module):
        def forward(self, x):
            return torch.atan(x)

    artifact = coreml.convert(capture(Atan(), (torch.randn(1, 3, 4, 4),)), tmp_path / "atan.mlpackage", precision="fp32")
    if sys.platform != "darwin":
        with pytest.raises(UnsupportedOpError, match="'atan'"):
            load(artifact.path)


def test_a_global_token_expanded_over_windows_runs_as_tile(tmp_path):
    """GCViT's expand of its global query over the windows: coremltools writes it as `tile`."""
    class GlobalQuery(torch.nn.Module):
        def forward(self, x):
            query = x.mean(dim=(2, 3)).reshape(1, 1, 3)
            return (x.flatten(2).transpose(1, 2).reshape(4, 4, 3) + query.expand(4, 4, 3)).reshape(1, -1)

    x = torch.randn(1, 3, 4, 4)
    artifact = coreml.convert(capture(GlobalQuery(), (x,)), tmp_path / "tile.mlpackage", precision="fp32")
    assert "tile" in Program(artifact.path).op_types
    np.testing.assert_allclose(load(artifact.path).run(x.numpy())[0], GlobalQuery()(x).numpy(), rtol=1e-6, atol=1e-6)


def test_image_input_takes_pixels_with_the_card_normalisation(tmp_path):
    model = edge_sdk.create_model("mobilenet_v2_035", img_size=96)
    artifact = coreml.convert(_graph(model), tmp_path / "img.mlpackage", precision="fp32", image_input=True)
    assert load(artifact.path).inputs[0].shape == (1, 3, 96, 96)
    assert artifact.options["image_input"] and artifact.options["image_scale"] == pytest.approx(1 / 255)
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed, report.to_json()


def test_image_input_with_class_labels_is_a_classifier(tmp_path):
    model = edge_sdk.create_model("cct_2_3x2_32")
    graph = _graph(model)
    graph.card = graph.card.with_(labels=tuple(f"class_{i}" for i in range(10)))
    artifact = coreml.convert(graph, tmp_path / "cls.mlpackage", precision="fp32", image_input=True)
    assert artifact.options["class_labels"]
    session = load(artifact.path)
    assert [s.name for s in session.outputs] == ["classLabel_probs"]
    report = edge_sdk.check_parity(model, artifact, count=2)
    assert report.passed, report.to_json()


def test_bad_options_fail_before_anything_is_written(tmp_path):
    graph = _graph(edge_sdk.create_model("mobilenet_v2_035", img_size=32))
    with pytest.raises(ConversionError, match="iOS14"):
        coreml.convert(graph, tmp_path / "a.mlpackage", min_target="iOS14")
    with pytest.raises(ConversionError, match="need iOS17"):
        coreml.convert(graph, tmp_path / "a.mlpackage", precision="int8", plan=_plan(graph, {}), min_target="iOS16")
    with pytest.raises(ConversionError, match="need iOS16"):
        coreml.convert(graph, tmp_path / "a.mlpackage", precision="int8-weights", plan=_plan(graph, {}), min_target="iOS15")
    for precision in ("int8", "int8-weights"):
        with pytest.raises(ConversionError, match="QuantPlan"):
            coreml.convert(graph, tmp_path / "a.mlpackage", precision=precision)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputPathError):
        coreml.convert(graph, blocker / "a.mlpackage")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_coremltools_failure_names_the_op_and_leaves_nothing(tmp_path):
    class Lgamma(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return torch.lgamma(self.head(x))

    with pytest.raises(ConversionError, match="lgamma"):
        coreml.convert(capture(Lgamma(), (torch.randn(1, 3, 4, 4),)), tmp_path / "l.mlpackage", precision="fp32")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_packages_give_clear_errors(tmp_path):
    artifact = coreml.convert(_graph(edge_sdk.create_model("mobilenet_v2_035", img_size=32)), tmp_path / "m.mlpackage")
    weights = artifact.path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(edge_sdk.errors.ArtifactError, match="truncated"):
        load(artifact.path)
    weights.unlink()
    with pytest.raises(edge_sdk.errors.ArtifactError, match="weight file"):
        load(artifact.path)
    (artifact.path / "Manifest.json").unlink()
    with pytest.raises(edge_sdk.errors.ArtifactError, match="Manifest.json"):
        load(artifact.path)


def test_float16_overflow_fails_parity_naming_the_module_that_overflows(tmp_path):
    """A float16 program of activations beyond 65504 outputs inf: parity names the module and says to use float32
    (ConvMixer-768/32 with random weights reaches 2.7e5 in its last layer; its CoreML fp16 cell said only cosine 0)."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1), torch.nn.Flatten()).eval()
    with torch.no_grad():
        model[0].weight.fill_(3000.0), model[0].bias.zero_(), model[2].weight.fill_(1e-4), model[2].bias.zero_()
    x = np.full((2, 3, 1, 1), 10.0, np.float32)  # 9e4 after the first conv
    artifact = edge_sdk.convert(model, target="coreml", precision="fp16", out=tmp_path, example_input=torch.from_numpy(x[:1]))
    report = edge_sdk.check_parity(model, artifact, samples=x)
    (failures,) = [o.failures for o in report.outputs]
    assert not report.passed and failures[0] == "not finite (inf or nan) on 2 of 2 samples", failures
    assert "float16 overflow: PyTorch's activations reach 9e+04 (in 0)" in failures[-1], failures
    assert report.unverifiable is None  # trained weights (not random_weights): a plain failure with the advice
    model.random_weights = True  # random weights: no float16 program of them exists, as the zoo's ConvMixer-768/32
    random = edge_sdk.check_parity(model, artifact, samples=x)
    assert not random.passed and random.unverifiable == "no float16 program of these weights can hold their activations", random.to_json()
    fp32 = edge_sdk.convert(model, target="coreml", precision="fp32", out=tmp_path / "fp32", example_input=torch.from_numpy(x[:1]))
    assert edge_sdk.check_parity(model, fp32, samples=x).passed
