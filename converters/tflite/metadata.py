"""TFLite model metadata: the TFLITE_METADATA entry that MediaPipe Tasks and Android tooling read, and ours.

ai-edge-litert ships no metadata schema module and mediapipe's Python writer does not import
from its wheel, so the ModelMetadata flatbuffer (file identifier "M001") is built here with
flatbuffers' Builder, table by table, using the slot numbers of the public metadata_schema.fbs.
It says what an app must know to feed the file without code: the image input's colour space,
size, NormalizationOptions (pixel units, 0..255) and value range, and the output's class names,
which travel the standard way: a labels file in a zip archive appended to the flatbuffer (the
interpreter ignores trailing bytes) and named by a TENSOR_AXIS_LABELS associated file.
A second entry, `edge_sdk`, holds JSON (model card, preprocessing, input contract, quantisation
summary) that edge-sdk's runtime reads back (edge_sdk/runtime/tflite_metadata.py).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field, replace

import flatbuffers
import numpy as np

from ...runtime.tflite_metadata import STANDARD_ENTRY
from ..embedded_info import INFO_KEY, artifact_info

LABELS_FILE = "labels.txt"
# The oldest metadata parser that understands every field written here (all are in schema 1.0.0).
MIN_PARSER_VERSION = "1.0.0"

# Enum and union values of metadata_schema.fbs.
_COLOR_SPACES = {3: 1, 1: 2}  # channels -> ColorSpaceType RGB / GRAYSCALE
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2  # ContentProperties
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType


@dataclass(frozen=True)
class TensorInfo:
    """One input or output as the metadata describes it; image fields only for an NHWC image tensor."""

    name: str
    description: str
    channels: int | None = None  # 1 or 3 when the tensor is an NHWC image
    size: tuple[int, int] | None = None  # width, height
    mean: tuple[float, ...] | None = None  # NormalizationOptions, in pixel units
    std: tuple[float, ...] | None = None
    value_range: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # Stats: (min, max)
    labels_file: str | None = None


@dataclass
class Embedded:
    """What a .tflite carries besides its graph: `Model.metadata` entries, packed files, and why labels are missing."""

    entries: dict[str, bytes]
    files: dict[str, bytes] = field(default_factory=dict)
    labels_note: str | None = None


def embed(card, *, precision: str, inputs: list[tuple[str, tuple[int, ...], bool]], outputs: list[tuple[str, tuple[int, ...], bool]],
          pixel_input: bool, quantization: dict | None) -> Embedded:
    """The metadata of a converted model; `inputs` and `outputs` are (tensor name, shape, NHWC?).

    `pixel_input`: the file takes RGB pixels 0..255 and normalises them itself (see image_input.py);
    otherwise its input is already normalised per the card.
    """
    in_infos = [_input_info(card, name, shape, nhwc, pixel_input) for name, shape, nhwc in inputs]
    out_infos = [TensorInfo(name, _output_description(card, shape)) for name, shape, _ in outputs]
    classes = outputs[0][1][-1] if outputs and outputs[0][1] else None
    ours = artifact_info(card, precision=precision, num_classes=classes, pixel_input=pixel_input,
                         layout="NHWC" if inputs and inputs[0][2] else "NCHW", quantization=quantization)
    # TFLite has no layout field and its convention is NHWC; a file read without its manifest needs to know which
    # 4-D tensors are NCHW (our default input, and every tensor of a litert-torch file).
    ours["layouts"] = {name: "NHWC" if nhwc else "NCHW" for name, shape, nhwc in inputs + outputs if len(shape) == 4}
    names = ours.pop("labels")
    files = {}
    if names is not None:  # class names travel the standard way, as a packed file the metadata names
        out_infos[0] = replace(out_infos[0], labels_file=LABELS_FILE)
        files[LABELS_FILE] = "".join(f"{n}\n" for n in names).encode()
        ours["labels_file"] = LABELS_FILE
    standard = model_metadata(
        name=card.name if card is not None else "model",
        description=ours["description"],
        version=ours["version"],
        author=ours["author"],
        license=ours["license"],
        inputs=in_infos,
        outputs=out_infos,
    )
    return Embedded({STANDARD_ENTRY: standard, INFO_KEY: json.dumps(ours).encode()}, files, ours["labels_note"])


def _input_info(card, name: str, shape: tuple[int, ...], nhwc: bool, pixel_input: bool) -> TensorInfo:
    """Image inputs get normalisation and range in pixel units (what MediaPipe expects), others a plain description."""
    channels = shape[-1] if nhwc else shape[1] if len(shape) == 4 else None
    if card is None or len(shape) != 4 or channels != card.input_size[0]:
        return TensorInfo(name, f"input of shape {list(shape)}")
    layout = "NHWC" if nhwc else "NCHW"
    height, width = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    if pixel_input:
        return TensorInfo(name, f"{layout} {'RGB' if channels == 3 else 'grey'} pixels 0..255; the model normalises them itself",
                          channels, (width, height), (0.0,), (1.0,), ((0.0,), (255.0,)))
    mean = np.asarray(card.mean[:channels], np.float64) * 255
    std = np.asarray(card.std[:channels], np.float64) * 255
    return TensorInfo(name, f"{layout} image normalised as (pixel - mean) / std, pixels 0..255",
                      channels if nhwc else None, (width, height), tuple(mean.tolist()), tuple(std.tolist()),
                      (tuple(((0 - mean) / std).tolist()), tuple(((255 - mean) / std).tolist())))


def _output_description(card, shape: tuple[int, ...]) -> str:
    if card is not None and card.task == "classification":
        return f"class scores over {shape[-1] if shape else '?'} classes (logits: no softmax applied)"
    return f"output of shape {list(shape)}"


def model_metadata(*, name: str, description: str, version: str, author: str, license: str,
                   inputs: list[TensorInfo], outputs: list[TensorInfo]) -> bytes:
    """A ModelMetadata flatbuffer with one subgraph; file identifier M001."""
    w = _Writer()
    subgraph = w.table(
        (0, "offset", w.string("main")),
        (2, "offset", w.vector([_tensor(w, t) for t in inputs])),
        (3, "offset", w.vector([_tensor(w, t) for t in outputs])),
    )
    root = w.table(
        (0, "offset", w.string(name)),
        (1, "offset", w.string(description)),
        (2, "offset", w.string(version)),
        (3, "offset", w.vector([subgraph])),
        (4, "offset", w.string(author)),
        (5, "offset", w.string(license) if license else None),
        (7, "offset", w.string(MIN_PARSER_VERSION)),
    )
    w.b.Finish(root, file_identifier=b"M001")
    return bytes(w.b.Output())


def _tensor(w: _Writer, t: TensorInfo) -> int:
    """TensorMetadata: name 0, description 1, content 3, process_units 4, stats 5, associated_files 6."""
    if t.channels is not None:
        size = w.table((0, "uint", t.size[0]), (1, "uint", t.size[1])) if t.size else None
        kind, properties = _IMAGE_PROPERTIES, w.table((0, "byte", _COLOR_SPACES[t.channels]), (1, "offset", size))
    else:
        kind, properties = _FEATURE_PROPERTIES, w.table()
    content = w.table((0, "ubyte", kind), (1, "offset", properties))
    units = None
    if t.mean is not None:
        options = w.table((0, "offset", w.floats(t.mean)), (1, "offset", w.floats(t.std)))
        units = w.vector([w.table((0, "ubyte", _NORMALIZATION_OPTIONS), (1, "offset", options))])
    stats = None
    if t.value_range is not None:
        stats = w.table((0, "offset", w.floats(t.value_range[1])), (1, "offset", w.floats(t.value_range[0])))
    files = None
    if t.labels_file is not None:
        label_file = w.table((0, "offset", w.string(t.labels_file)), (1, "offset", w.string("class names, one per line")),
                             (2, "byte", _TENSOR_AXIS_LABELS))
        files = w.vector([label_file])
    return w.table(
        (0, "offset", w.string(t.name)),
        (1, "offset", w.string(t.description)),
        (3, "offset", content),
        (4, "offset", units),
        (5, "offset", stats),
        (6, "offset", files),
    )


class _Writer:
    """flatbuffers' Builder with the few shapes the metadata needs. Children are built before their
    table starts (a flatbuffer is written back to front), which Python's argument order gives for free."""

    _SLOTS = {"offset": "PrependUOffsetTRelativeSlot", "byte": "PrependInt8Slot", "ubyte": "PrependUint8Slot",
              "uint": "PrependUint32Slot"}

    def __init__(self):
        self.b = flatbuffers.Builder(1024)

    def string(self, text: str | None) -> int | None:
        return self.b.CreateString(text) if text else None

    def floats(self, values) -> int:
        return self.b.CreateNumpyVector(np.asarray(values, np.float32))

    def vector(self, offsets: list[int]) -> int:
        self.b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            self.b.PrependUOffsetTRelative(offset)
        return self.b.EndVector()

    def table(self, *fields: tuple[int, str, int | None]) -> int:
        """fields: (slot, kind, value); a None value leaves the field out."""
        self.b.StartObject(max((slot for slot, _, _ in fields), default=-1) + 1)
        for slot, kind, value in fields:
            if value is not None:
                getattr(self.b, self._SLOTS[kind])(slot, value, 0)
        return self.b.EndObject()


def pack_files(model: bytes, files: dict[str, bytes]) -> bytes:
    """The flatbuffer with `files` zipped after it, uncompressed as MediaPipe's reader requires."""
    if not files:
        return model
    buffer = io.BytesIO(model)
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)  # fixed date: same input, same bytes
    return buffer.getvalue()
