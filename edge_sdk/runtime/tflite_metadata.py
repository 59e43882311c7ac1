"""What a .tflite carries about itself: its `Model.metadata` entries and the files zipped after the flatbuffer.

edge-sdk writes two entries (converters/tflite/metadata.py): TFLITE_METADATA, the standard
ModelMetadata flatbuffer that MediaPipe and Android tooling read, and `edge_sdk`, JSON with the
model card, preprocessing, input contract and quantisation summary (runtime/model_info.py), so a file that travelled
without its manifest still says how to feed it. The few tables involved are read with struct
(flatbuffers' wire format: little-endian offsets and vtables), so this works with tflite-runtime
too, which ships no schema module.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from .model_info import INFO_KEY, parse_embedded

STANDARD_ENTRY = "TFLITE_METADATA"


def metadata_entries(data: bytes) -> dict[str, bytes]:
    """name -> buffer contents of every `Model.metadata` entry (Model: buffers slot 4, metadata slot 6)."""
    model = _deref(data, 0)
    entries_at, buffers_at = _field(data, model, 6), _field(data, model, 4)
    if entries_at is None or buffers_at is None:
        return {}
    buffers = _vector(data, buffers_at)[0]
    entries = {}
    start, count = _vector(data, entries_at)
    for i in range(count):
        entry = _deref(data, start + 4 * i)  # Metadata: name slot 0, buffer slot 1
        name_at, index_at = _field(data, entry, 0), _field(data, entry, 1)
        index = struct.unpack_from("<I", data, index_at)[0] if index_at is not None else 0
        contents_at = _field(data, _deref(data, buffers + 4 * index), 0)  # Buffer: data slot 0
        entries[_bytes(data, name_at).decode()] = _bytes(data, contents_at) if contents_at is not None else b""
    return entries


def _deref(data: bytes, at: int) -> int:
    """The position an offset stored at `at` points to."""
    return at + struct.unpack_from("<I", data, at)[0]


def _field(data: bytes, table: int, slot: int) -> int | None:
    """Where a table's field is stored, or None when the table leaves it out."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    if 4 + 2 * slot >= struct.unpack_from("<H", data, vtable)[0]:
        return None
    offset = struct.unpack_from("<H", data, vtable + 4 + 2 * slot)[0]
    return table + offset if offset else None


def _vector(data: bytes, at: int) -> tuple[int, int]:
    """(first element, length) of the vector a field at `at` points to."""
    start = _deref(data, at)
    return start + 4, struct.unpack_from("<I", data, start)[0]


def _bytes(data: bytes, at: int) -> bytes:
    start, length = _vector(data, at)
    return bytes(data[start : start + length])


def edge_sdk_info(path: str | Path) -> dict | None:
    """The `edge_sdk` JSON entry of a .tflite written by edge-sdk, else None."""
    return _info(Path(path).read_bytes())


def associated_files(path: str | Path) -> dict[str, bytes]:
    """The files packed after the flatbuffer (the zip TFLite metadata uses for labels), by name."""
    return _files(Path(path).read_bytes())


def embedded_labels(path: str | Path) -> list[str] | None:
    """The class names packed into an edge-sdk .tflite, in output order, else None."""
    return read_embedded(path)[1]


def read_embedded(path: str | Path) -> tuple[dict | None, list[str] | None]:
    """(the `edge_sdk` entry, the packed class names) of a .tflite, reading the file once."""
    data = Path(path).read_bytes()
    info = _info(data)
    name = info.get("labels_file") if info else None
    text = _files(data).get(name) if name else None
    return info, text.decode().splitlines() if text is not None else None


def _info(data: bytes) -> dict | None:
    return parse_embedded(metadata_entries(data).get(INFO_KEY))


def _files(data: bytes) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}
