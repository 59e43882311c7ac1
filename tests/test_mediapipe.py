"""Our .tflite files in MediaPipe Tasks' ImageClassifier, the client Android apps use, and their metadata read back.

MediaPipe runs here as it does in an app: the raw RGB photo in, no preprocessing code, the
normalisation and the class names taken from the file's metadata. To compare with our own
Session "on the same photo", the test needs the exact pixels MediaPipe's resize produced;
a probe model (the identity on the image, converted like any other model) returns them as
its scores. MobileNetV2 (random weights) is captured once for the file.
"""

from __future__ import annotations

import json
import warnings

import flatbuffers
import numpy as np
import pytest
import torch
from edge_sdk.converters import tflite
from edge_sdk.converters.tflite.metadata import LABELS_FILE, MIN_PARSER_VERSION
from edge_sdk.quantize import CalibrationWarning, QuantRecipe, quantize, summarize

import edge_sdk
from edge_sdk import runtime
from edge_sdk.api import capture_model, resolve_model
from edge_sdk.cli import main
from edge_sdk.data import bundled_photos
from edge_sdk.models.labels import imagenet_names
from edge_sdk.runtime.tflite_metadata import STANDARD_ENTRY, associated_files, edge_sdk_info, embedded_labels, metadata_entries

try:
    from mediapipe import Image, ImageFormat
    from mediapipe.tasks.python import BaseOptions, vision
except ImportError:
    vision = None
needs_mediapipe = pytest.mark.skipif(vision is None, reason="mediapipe is not importable (pip install mediapipe: the dev extra)")


@pytest.fixture(scope="module")
def mnv2(tmp_path_factory):
    """MobileNetV2 as float and as full int8 with uint8 I/O, both with the NHWC pixel input an app feeds."""
    out = tmp_path_factory.mktemp("mediapipe")
    resolved = resolve_model("mobilenet_v2")
    graph = capture_model(resolved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        qmodel = quantize(graph, None, QuantRecipe(calibration_samples=16))
    files = {
        "fp32": tflite.convert(graph, out / "fp32.tflite", nhwc_input=True),
        "int8-uint8": tflite.convert(graph, out / "int8.tflite", precision="int8", plan=qmodel.plan, io="uint8", nhwc_input=True,
                                     quantization=summarize(qmodel).to_dict()),
        "nchw": tflite.convert(graph, out / "nchw.tflite"),
    }
    return resolved.card, files


@pytest.fixture(scope="module")
def fed_pixels(tmp_path_factory):
    """(name, photo, the 224x224 pixels MediaPipe's resize made of it): a probe model's scores are its input image."""

    class Probe(torch.nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1).reshape(1, -1) + 0.0

    art = edge_sdk.convert(Probe(), "tflite", example_input=torch.zeros(1, 3, 224, 224),
                           out=tmp_path_factory.mktemp("probe"), nhwc_input=True)
    mean, std = np.asarray(art.card["mean"]), np.asarray(art.card["std"])  # the user card's (ImageNet) normalisation
    photos = [(n, np.ascontiguousarray(img)) for n, img in bundled_photos() if img.ndim == 3 and img.dtype == np.uint8]
    fed = [np.rint((s.reshape(224, 224, 3) * std + mean) * 255) for s, _ in _classify(art.path, [p for _, p in photos])]
    return [(name, photo, pixels) for (name, photo), pixels in zip(photos, fed)]


def _classify(path, images) -> list[tuple[np.ndarray, list]]:
    """MediaPipe's scores for each image, indexed by class, with its categories (best first)."""
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)))
    results = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image in images:
            categories = classifier.classify(Image(image_format=ImageFormat.SRGB, data=image)).classifications[0].categories
            scores = np.full(len(categories), np.nan)
            scores[[c.index for c in categories]] = [c.score for c in categories]
            results.append((scores, categories))
    return results


def _top(scores: np.ndarray) -> set[int]:
    """The classes at the top score (a uint8 output often ties)."""
    return set(np.flatnonzero(scores == np.nanmax(scores)).tolist())


@needs_mediapipe
@pytest.mark.parametrize("kind", ["fp32", "int8-uint8"])
def test_mediapipe_top1_equals_session_on_raw_photos(mnv2, fed_pixels, kind):
    """Each bundled colour photograph (HxWx3 uint8 RGB at its own size, as an app holds it) into MediaPipe;
    our Session gets the pixels MediaPipe's resize made, normalised per the model card as edge-sdk's users feed it."""
    card, files = mnv2
    names = imagenet_names()
    session = runtime.load(files[kind].path)
    results = _classify(files[kind].path, [photo for _, photo, _ in fed_pixels])
    for (photo, _, pixels), (scores, categories) in zip(fed_pixels, results):
        x = ((pixels / 255 - np.asarray(card.mean)) / np.asarray(card.std)).transpose(2, 0, 1)[None].astype(np.float32)
        ours = session.run(x)[0][0]
        mine, theirs = _top(ours), _top(scores)
        print(f"{kind} {photo}: MediaPipe {sorted(theirs)} {categories[0].category_name!r}, Session {sorted(mine)}")
        assert theirs == mine, photo
        assert all(names[c.index] == c.category_name for c in categories), "MediaPipe's names come from the file's labels"
        # the same numbers: fp32 to float rounding, int8 to one output step of another XNNPACK build
        step = files[kind].outputs[0].quantization.scale[0] if kind != "fp32" else 1e-4
        assert np.abs(scores - ours).max() <= step * 1.01, photo


@needs_mediapipe
def test_mediapipe_refuses_a_normalised_nchw_file(mnv2):
    """Without --nhwc-input the file takes normalised NCHW values, which no MediaPipe model can: it says so, not silently."""
    _, files = mnv2
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(files["nchw"].path)))
    with pytest.raises(Exception, match="Expected ImageProperties"):
        vision.ImageClassifier.create_from_options(options)


class _Table:
    """Just enough of a flatbuffers table reader (flatbuffers' Table API) to read metadata back by slot."""

    def __init__(self, buf: bytes, pos: int):
        self.t = flatbuffers.table.Table(bytearray(buf), pos)

    @classmethod
    def root(cls, buf: bytes) -> _Table:
        return cls(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, bytearray(buf), 0))

    def _at(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._at(slot)
        return self.t.String(o + self.t.Pos).decode() if o else None

    def byte(self, slot: int) -> int:
        o = self._at(slot)
        return self.t.Get(flatbuffers.number_types.Uint8Flags, o + self.t.Pos) if o else 0

    def uint(self, slot: int) -> int:
        o = self._at(slot)
        return self.t.Get(flatbuffers.number_types.Uint32Flags, o + self.t.Pos) if o else 0

    def table(self, slot: int) -> _Table | None:
        o = self._at(slot)
        return _Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list[_Table]:
        o = self._at(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def floats(self, slot: int) -> list[float]:
        o = self._at(slot)
        return self.t.GetVectorAsNumpy(flatbuffers.number_types.Float32Flags, o).tolist() if o else []


def _standard(path) -> _Table:
    raw = metadata_entries(path.read_bytes())[STANDARD_ENTRY]
    assert raw[4:8] == b"M001"
    return _Table.root(raw)


def _normalisation(tensor: _Table) -> tuple[list[float], list[float]]:
    (unit,) = tensor.tables(4)
    assert unit.byte(0) == 1  # ProcessUnitOptions.NormalizationOptions
    options = unit.table(1)
    return options.floats(0), options.floats(1)


def test_metadata_reads_back(mnv2):
    card, files = mnv2
    meta = _standard(files["fp32"].path)
    assert meta.string(0) == "mobilenet_v2" and "Sandler" in meta.string(1) and meta.string(4) == "edge-sdk"
    assert meta.string(7) == MIN_PARSER_VERSION and "fp32" in meta.string(2)
    (subgraph,) = meta.tables(3)
    (image,), (scores,) = subgraph.tables(2), subgraph.tables(3)
    assert image.string(0) == "input" and scores.string(0) == "output"
    content = image.table(3)
    assert content.byte(0) == 2  # ContentProperties.ImageProperties
    properties = content.table(1)
    assert properties.byte(0) == 1 and (properties.table(1).uint(0), properties.table(1).uint(1)) == (224, 224)  # RGB, WxH
    assert _normalisation(image) == ([0.0], [1.0]), "the NHWC file takes raw pixels: MediaPipe's identity mapping"
    stats = image.table(5)
    assert (stats.floats(1), stats.floats(0)) == ([0.0], [255.0])
    (labels,) = scores.tables(6)
    assert labels.string(0) == LABELS_FILE and labels.byte(2) == 2  # TENSOR_AXIS_LABELS
    assert associated_files(files["fp32"].path)[LABELS_FILE].decode().splitlines() == list(imagenet_names())
    # an NCHW file takes values normalised per channel: its options are the card's, in pixel units
    (nchw,) = _standard(files["nchw"].path).tables(3)[0].tables(2)
    mean, std = _normalisation(nchw)
    assert np.allclose(mean, np.asarray(card.mean) * 255) and np.allclose(std, np.asarray(card.std) * 255)


def test_edge_sdk_entry_reads_back(mnv2):
    card, files = mnv2
    info = edge_sdk_info(files["int8-uint8"].path)
    assert info["model"]["name"] == "mobilenet_v2" and info["precision"] == "int8"
    assert info["input"] == {"pixels": True, "layout": "NHWC"} and info["preprocessing"]["mean"] == list(card.mean)
    assert info["quantization"]["scheme"] == "int8" and info["quantization"]["int8_layers"] > 50
    assert embedded_labels(files["int8-uint8"].path)[:2] == ["tench", "goldfish"]
    assert edge_sdk_info(files["nchw"].path)["input"]["pixels"] is False
    # the Session reads the entry, not the manifest: a file copied alone still takes normalised NCHW
    manifest = files["fp32"].manifest_path
    manifest.rename(manifest.with_suffix(".moved"))
    try:
        x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
        a = runtime.load(files["fp32"].path).run(x)[0]
        b = runtime.load(files["nchw"].path).run(x)[0]
        assert np.abs(a - b).max() < 1e-4
    finally:
        manifest.with_suffix(".moved").rename(manifest)


def test_cli_labels_and_a_grey_model(capsys, tmp_path):
    """--labels puts the names in the file; LeNet-5's grey input gets GRAYSCALE metadata; a wrong count is refused."""
    digits = tmp_path / "digits.txt"
    digits.write_text("".join(f"digit {i}\n" for i in range(10)))
    code = main(["convert", "lenet5", "--target", "tflite", "--nhwc-input", "--labels", str(digits), "--out", str(tmp_path),
                 "--count", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["parity"]["passed"] and out["artifact"]["options"]["labels"] is True
    path = tmp_path / "lenet5.tflite"
    assert embedded_labels(path) == [f"digit {i}" for i in range(10)]
    (image,) = _standard(path).tables(3)[0].tables(2)
    assert image.table(3).table(1).byte(0) == 2  # GRAYSCALE
    (digits_short := tmp_path / "short.txt").write_text("a\nb\n")
    code = main(["convert", "lenet5", "--target", "tflite", "--labels", str(digits_short), "--out", str(tmp_path / "x")])
    assert code == 2 and "2 class names for a model with 10 classes" in capsys.readouterr().err
    code = main(["convert", "lenet5", "--target", "tflite", "--out", str(tmp_path / "y"), "--no-verify"])
    assert code == 0 and "no class names in the file" in capsys.readouterr().err
