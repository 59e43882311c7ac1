"""CoreML backend: `MLModel.predict` on macOS, edge-sdk's reference interpreter elsewhere.

Apple's runtime exists only on macOS. Everywhere else the ML Program is executed by
`mil_interpreter` (numpy), and the session says so: `backend` is "coreml-reference",
because what it proves is the program in the package, not Apple's kernels.
An image input (ImageType) takes pixels in 0..255; `run` still takes the model's
normalised float32 NCHW and turns it back into pixels with the manifest's mean / std.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ArtifactError, InputError, require
from .model_info import INFO_KEY, ModelInfo, parse_embedded
from .session import Session
from .specs import TensorSpec


class CoreMLSession(Session):
    def __init__(self, path: Path, threads: int | None = None, reference: bool | None = None):
        """`reference=True` runs the interpreter even on macOS; the default uses Apple's runtime where it exists."""
        from . import mil_interpreter

        self.path = Path(path)
        self.threads = threads
        if not (self.path / "Manifest.json").is_file():
            raise ArtifactError(f"{self.path} is not an .mlpackage folder (no Manifest.json)",
                                "an .mlpackage is a folder: copy it whole, or re-create it with `edge-sdk convert ... --target coreml`")
        use_apple = sys.platform == "darwin" and not reference
        if use_apple:
            ct = require("coremltools", extra="coreml", purpose="Running .mlpackage files with Apple's CoreML")
            self._model = ct.models.MLModel(str(self.path))
            self._program = None
            spec = self._model.get_spec()
            self.backend = "coreml"
            self.runtime_version = f"coremltools {ct.__version__} (CoreML, macOS)"
        else:
            self._program = mil_interpreter.Program(self.path)
            spec = self._program.spec
            self.backend = "coreml-reference"
            self.runtime_version = f"edge-sdk reference interpreter (numpy {np.__version__}, {self._program.opset})"
        self._labels = mil_interpreter.class_labels(spec)
        embedded = parse_embedded(spec.description.metadata.userDefined.get(INFO_KEY))
        self._info = ModelInfo.from_embedded(embedded, labels=self._labels or None) if embedded else None
        self._pixels = _pixel_transform(spec, self.info)
        self.inputs = [_input_spec(f) for f in spec.description.input]
        self._probabilities = spec.description.predictedProbabilitiesName or None
        outputs = [f for f in spec.description.output if f.type.WhichOneof("Type") == "multiArrayType"
                   or f.name == self._probabilities]
        self.outputs = [TensorSpec(f.name, (1, len(self._labels)) if f.name == self._probabilities
                                   else tuple(int(d) for d in f.type.multiArrayType.shape), "float32", "")
                        for f in outputs]

    def run(self, inputs) -> list[np.ndarray]:
        """Normalised float32 NCHW in, float32 out; an image input gets its pixels back from mean / std."""
        if self._pixels is None:
            return super().run(inputs)
        mean, std = self._pixels
        pixels = np.clip((self._bind(inputs)[0] * std + mean) * 255.0, 0.0, 255.0).astype(np.float32)
        per_image = [self.run_raw([pixels[i : i + 1]]) for i in range(len(pixels))]  # an ImageType holds one image
        return [np.concatenate(outs, axis=0).astype(np.float32) for outs in zip(*per_image)]

    def run_raw(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        feeds = {spec.name: np.asarray(x, np.float32) for spec, x in zip(self.inputs, inputs)}
        if self._program is not None:
            results = self._program.run(feeds)
        else:
            if self._pixels is not None:
                feeds = {name: _to_image(x) for name, x in feeds.items()}
            results = self._model.predict(feeds)
        out = []
        for spec in self.outputs:
            value = results[spec.name]
            if spec.name == self._probabilities:
                value = np.asarray([[value[label] for label in self._labels]], np.float32)
            out.append(np.asarray(value, np.float32))
        return out


def _input_spec(feature) -> TensorSpec:
    kind = feature.type.WhichOneof("Type")
    if kind == "imageType":
        image = feature.type.imageType
        channels = 1 if image.colorSpace == 10 else 3  # GRAYSCALE = 10
        return TensorSpec(feature.name, (1, channels, int(image.height), int(image.width)), "float32", "NCHW")
    if kind != "multiArrayType":
        raise ArtifactError(f"input {feature.name!r} is a {kind}; edge-sdk runs tensor and image inputs only")
    shape = tuple(int(d) for d in feature.type.multiArrayType.shape)
    return TensorSpec(feature.name, shape, "float32", "NCHW" if len(shape) == 4 else "")


def _pixel_transform(spec, info: ModelInfo) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) shaped for NCHW when the input is an image, from the package's metadata (or its manifest)."""
    if not any(f.type.WhichOneof("Type") == "imageType" for f in spec.description.input):
        return None
    prep = info.preprocessing
    if prep is None:
        raise InputError("this .mlpackage takes an image but says nothing of its mean / std (no edge-sdk metadata, no manifest)",
                         "re-create it with `edge-sdk convert ... --target coreml --image-input`, or feed pixels with run_raw")
    shape = (1, -1, 1, 1)
    channels = prep.channels
    return (np.asarray(prep.mean[:channels], np.float32).reshape(shape),
            np.asarray(prep.std[:channels], np.float32).reshape(shape))


def _to_image(x: np.ndarray):
    """An NCHW pixel array (batch 1) as the PIL image MLModel.predict takes for an ImageType."""
    from PIL import Image

    pixels = np.clip(np.rint(x[0]), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
