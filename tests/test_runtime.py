import numpy as np
import pytest
from tiny_tflite import write_relu_model

from edge_sdk import runtime
from edge_sdk.errors import ArtifactError, InputError


def test_onnx_session_specs_and_float_run(mnv2_onnx):
    session = runtime.load(mnv2_onnx.path)
    assert session.backend == "onnxruntime"
    (spec,) = session.inputs
    assert spec.shape == (1, 3, 224, 224) and spec.dtype == "float32" and spec.layout == "NCHW"
    assert session.outputs[0].shape == (1, 1000)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), np.float32)
    (y,) = session.run(x)
    assert y.shape == (1, 1000) and y.dtype == np.float32
    np.testing.assert_array_equal(session.run({"input": x})[0], y)
    np.testing.assert_array_equal(session.run_raw([x])[0], y)


def test_batches_larger_than_the_fixed_batch_run_in_slices(mnv2_onnx):
    session = runtime.load(mnv2_onnx.path)
    x = np.random.default_rng(1).standard_normal((3, 3, 224, 224), np.float32)
    (y,) = session.run(x)
    assert y.shape == (3, 1000)
    np.testing.assert_allclose(y[2:], session.run(x[2:])[0], rtol=1e-6)


def test_threads_reach_onnxruntime(mnv2_onnx):
    session = runtime.load(mnv2_onnx.path, threads=1)
    assert session.threads == 1
    assert session._session.get_session_options().intra_op_num_threads == 1


def test_wrong_shape_and_dtype_are_clear_errors(mnv2_onnx):
    session = runtime.load(mnv2_onnx.path)
    with pytest.raises(InputError, match=r"shape \(1, 3, 128, 128\); the model takes \(1, 3, 224, 224\)"):
        session.run(np.zeros((1, 3, 128, 128), np.float32))
    with pytest.raises(InputError, match="dtype uint8; Session.run takes float32"):
        session.run(np.zeros((1, 3, 224, 224), np.uint8))
    with pytest.raises(InputError, match="got 2 inputs"):
        session.run([np.zeros((1, 3, 224, 224), np.float32)] * 2)
    with pytest.raises(InputError, match="missing inputs: input"):
        session.run({"image": np.zeros((1, 3, 224, 224), np.float32)})


def test_tflite_int8_session_quantises_and_transposes_inside(tmp_path):
    path = write_relu_model(tmp_path / "relu.tflite", scale=0.05, zero_point=-3)
    for xnnpack in (True, False):
        session = runtime.load(path, threads=1, xnnpack=xnnpack)
        (spec,) = session.inputs
        assert spec.dtype == "int8" and spec.layout == "NHWC"
        assert spec.quantization.scale == pytest.approx((0.05,)) and spec.quantization.zero_point == (-3,)
        assert spec.nchw_shape() == (1, 3, 4, 4)
        x = np.random.default_rng(2).uniform(-3, 3, (1, 3, 4, 4)).astype(np.float32)
        (y,) = session.run(x)
        expected = np.maximum(np.clip(np.round(x / 0.05) - 3, -128, 127) + 3, 0) * 0.05
        np.testing.assert_allclose(y, expected, atol=1e-6)
        raw = session.run_raw([np.full((1, 4, 4, 3), -50, np.int8)])[0]
        assert raw.dtype == np.int8 and (raw == -3).all()


def test_tflite_float_session(tmp_path):
    session = runtime.load(write_relu_model(tmp_path / "relu_f32.tflite", dtype="float32"))
    x = np.random.default_rng(3).standard_normal((1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(session.run(x)[0], np.maximum(x, 0))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("truncated.onnx", None, "not a loadable ONNX model"),
        ("text.tflite", b"this is not a model, just text\n", "not a TFLite flatbuffer"),
        ("empty.onnx", b"", "is empty"),
        ("model.bin", b"1234", "cannot tell the format"),
    ],
)
def test_corrupt_or_unknown_artifacts_are_clear_errors(tmp_path, mnv2_onnx, name, content, message):
    path = tmp_path / name
    path.write_bytes(mnv2_onnx.path.read_bytes()[:5000] if content is None else content)
    with pytest.raises(ArtifactError, match=message):
        runtime.load(path)


def test_missing_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        runtime.load(tmp_path / "nothing.onnx")


def test_truncated_tflite_is_a_clear_error(tmp_path):
    good = write_relu_model(tmp_path / "good.tflite").read_bytes()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(ArtifactError, match="TFLite"):
        runtime.load(bad)


def test_torch_backend_runs_a_saved_program(tmp_path):
    import torch

    import edge_sdk

    model = edge_sdk.create_model("mobilenet_v2_035", img_size=64)
    x = torch.randn(1, 3, 64, 64)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "m.pt2")
    threads = torch.get_num_threads()
    session = runtime.load(tmp_path / "m.pt2", threads=threads + 1)
    assert session.backend == "torch" and session.inputs[0].shape == (1, 3, 64, 64)
    (y,) = session.run(x.numpy())
    np.testing.assert_allclose(y, model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert torch.get_num_threads() == threads  # the session's thread count was for its own runs, not the process's
