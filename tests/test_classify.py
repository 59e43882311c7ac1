"""Artifacts that describe themselves: every format carries the card, and `session.classify` uses it.

MobileNetV2-0.35 (random weights, seed 0) goes to .onnx, .tflite (pixel input) and .mlpackage
(a Vision classifier with an image input); the bundled photos are written as image files, and each
format must name the same classes for them with no preprocessing code. Random weights give
near-flat scores, so rankings are compared with the ONNX file's probabilities as the yardstick.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import edge_sdk
from edge_sdk import runtime
from edge_sdk.cli import main
from edge_sdk.data import bundled_photos
from edge_sdk.errors import DataError, InputError
from edge_sdk.models.labels import imagenet_names
from edge_sdk.runtime.classify import Prediction
from edge_sdk.runtime.model_info import INFO_FORMAT, INFO_KEY

PUBLISHER = {"author": "Jane Doe", "license": "CC-BY-4.0", "model_version": "2.1"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("classify")
    model = edge_sdk.create_model("mobilenet_v2_035")
    graph = edge_sdk.capture(model, torch.randn(1, 3, 224, 224), card=model.card)  # one capture, three formats
    return {
        "onnx": edge_sdk.convert(graph, "onnx", out=out, **PUBLISHER).path,
        "tflite": edge_sdk.convert(graph, "tflite", out=out, nhwc_input=True, **PUBLISHER).path,
        "tflite-nchw": edge_sdk.convert(graph, "tflite", out=out / "nchw", **PUBLISHER).path,  # the default input layout
        "coreml": edge_sdk.convert(graph, "coreml", out=out, precision="fp32", image_input=True, **PUBLISHER).path,
    }


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name, image in bundled_photos(5):
        paths.append(folder / f"{name}.jpg")
        Image.fromarray(image).save(paths[-1], quality=95)
    return paths


def test_onnx_metadata_props_carry_the_card(files):
    model = onnx.load(str(files["onnx"]), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["author"] == "Jane Doe" and props["license"] == "CC-BY-4.0" and props["version"] == "2.1"
    assert props["edge_sdk_version"] == edge_sdk.__version__
    info = json.loads(props[INFO_KEY])
    assert info["format"] == INFO_FORMAT and info["input"] == {"pixels": False, "layout": "NCHW"}
    assert info["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406]) and info["preprocessing"]["size"] == [224, 224]
    assert info["labels"] == list(imagenet_names()) and info["model"]["name"] == "mobilenet_v2_035"
    assert "MobileNetV2" in model.doc_string


def test_coreml_classifier_metadata(files):
    import coremltools as ct

    spec = ct.utils.load_spec(str(files["coreml"]))
    meta = spec.description.metadata
    assert (meta.author, meta.license, meta.versionString) == ("Jane Doe", "CC-BY-4.0", "2.1")
    assert "MobileNetV2" in meta.shortDescription and "edge-sdk" in meta.shortDescription
    assert json.loads(meta.userDefined[INFO_KEY])["model"]["name"] == "mobilenet_v2_035"
    assert spec.description.predictedFeatureName == "classLabel"
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"


@pytest.mark.parametrize("kind", ["onnx", "tflite", "tflite-nchw", "coreml"])
def test_every_format_reads_its_info_from_the_file_itself(files, kind, tmp_path):
    # the manifest beside the file is the fallback; the file alone must be enough, its layouts included
    lone = tmp_path / files[kind].name
    if files[kind].is_dir():
        import shutil

        shutil.copytree(files[kind], lone)
    else:
        lone.write_bytes(files[kind].read_bytes())
    alone, beside_manifest = runtime.load(lone), runtime.load(files[kind])
    info = alone.info
    assert info.source == "file" and info.name == "mobilenet_v2_035"
    assert info.labels == imagenet_names() and info.preprocessing.size == (224, 224)
    assert (info.author, info.license, info.version) == ("Jane Doe", "CC-BY-4.0", "2.1")
    assert info.pixel_input == (kind == "tflite")
    assert alone.inputs == beside_manifest.inputs and alone.outputs == beside_manifest.outputs
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    np.testing.assert_array_equal(alone.run(x)[0], beside_manifest.run(x)[0])


@pytest.mark.parametrize("kind", ["tflite", "coreml"])
def test_classify_names_the_same_classes_on_every_format(files, photo_files, kind):
    reference = runtime.load(files["onnx"]).classify(photo_files, top_k=1000)
    results = runtime.load(files[kind]).classify(photo_files, top_k=5)
    for ref, got in zip(reference, results):
        ref_score = {p.label: p.score for p in ref}
        assert abs(sum(ref_score.values()) - 1) < 1e-5
        for rank, prediction in enumerate(got):
            # the same probability as ONNX gives that class, and ranked where ONNX ranks it (up to ties)
            assert prediction.score == pytest.approx(ref_score[prediction.label], rel=1e-3)
            assert ref_score[prediction.label] >= ref[rank].score - 1e-6


def test_classify_takes_a_path_a_pil_image_or_an_array(files, photo_files):
    session = runtime.load(files["onnx"])
    by_path = session.classify(str(photo_files[0]), top_k=3)
    with Image.open(photo_files[0]) as image:
        by_pil = session.classify(image, top_k=3)
        by_array = session.classify(np.asarray(image), top_k=3)
    assert all(isinstance(p, Prediction) for p in by_path) and len(by_path) == 3
    assert [p.label for p in by_path] == [p.label for p in by_pil] == [p.label for p in by_array]
    assert by_path[0].score >= by_path[1].score >= by_path[2].score
    assert by_path[0].label == imagenet_names()[by_path[0].index]


def test_classify_errors_say_what_to_do(files, tmp_path):
    session = runtime.load(files["onnx"])
    with pytest.raises(DataError, match="does not exist"):
        session.classify(tmp_path / "missing.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(DataError, match="cannot read"):
        session.classify(tmp_path / "notes.jpg")
    with pytest.raises(InputError, match="HWC"):
        session.classify(np.zeros((1, 3, 224, 224), np.float32))
    with pytest.raises(InputError, match="top_k"):
        session.classify(np.zeros((8, 8, 3), np.uint8), top_k=0)


def test_a_file_without_metadata_or_manifest_cannot_classify(tmp_path):
    from onnx import TensorProto, helper

    path = tmp_path / "bare.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "bare", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    session = runtime.load(path)
    assert session.info.source == "none"
    with pytest.raises(InputError, match="how to preprocess"):
        session.classify(np.zeros((8, 8, 3), np.uint8))


def test_an_embedding_model_is_not_a_classifier(tmp_path):
    model = edge_sdk.create_model("mobilenet_v2_035", img_size=32)
    model.card = model.card.with_(task="embedding")  # as the SimCLR and MAE encoders declare
    path = edge_sdk.convert(model, "onnx", out=tmp_path).path
    with pytest.raises(InputError, match="embedding model"):
        runtime.load(path).classify(np.zeros((64, 64, 3), np.uint8))


def test_cli_classify(files, photo_files, capsys):
    assert main(["classify", str(files["tflite"]), *map(str, photo_files[:2]), "--top-k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == "tflite" and [r["image"] for r in result["results"]] == list(map(str, photo_files[:2]))
    expected = runtime.load(files["tflite"]).classify(str(photo_files[0]), top_k=2)
    assert [p["label"] for p in result["results"][0]["predictions"]] == [p.label for p in expected]
    assert main(["classify", str(files["tflite"]), "no-such.jpg"]) != 0
    assert "does not exist" in capsys.readouterr().err
