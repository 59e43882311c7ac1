"""TFLite through Google's litert-torch (`--backend litert-torch`): a way through for ops our emitter lacks.

litert-torch is optional and heavy (jax, transformers, ~2 GB), so nothing on the
default `--target tflite` path imports this module. It writes the same Artifact and
manifest as our emitter, so `edge-sdk verify` and `edge-sdk bench` treat the file
alike. int8 goes through litert-torch's PT2E quantizer, calibrated on exactly the
samples our own calibration would use for the same arguments.

The file keeps PyTorch's NCHW input (litert-torch transposes inside), and its int8
file takes and gives int8 tensors; the manifest records both, so the runtime
Session still takes float NCHW.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

from ..errors import ConversionError, DataError, MissingDependencyError, require
from ..runtime import load
from .base import Artifact, atomic_output, write_manifest

PIP_REQUIREMENT = "litert-torch==0.10.0"  # the release this adapter is written and tested against
PRECISIONS = ("fp32", "int8")
QUANTIZER = "litert-torch PT2E: per-channel symmetric int8 weights, per-tensor int8 activations (histogram observer)"


def require_litert_torch():
    """Import litert_torch, or raise one error that says how to install it (it is no edge-sdk extra)."""
    try:
        return require("litert_torch", package="litert-torch", extra="tflite", purpose="--backend litert-torch")
    except MissingDependencyError as exc:
        exc.hint = (f"pip install {PIP_REQUIREMENT} (optional, not an edge-sdk dependency: it brings jax and "
                    "transformers), or drop --backend to use edge-sdk's own TFLite emitter")
        raise


def convert(resolved, out_path: Path, calibration=None, recipe=None, *, precision: str = "fp32",
            nhwc_input: bool = False) -> Artifact:
    """Convert a ResolvedModel (edge_sdk.api) with litert-torch; int8 calibrates on `calibration` per `recipe`.

    Only the keyword-only parameters are format options (edge_sdk.api checks them by name);
    `nhwc_input` exists so that the CLI's default False passes and True fails clearly.
    """
    litert_torch = require_litert_torch()
    if precision not in PRECISIONS:
        raise ConversionError(f"tflite --backend litert-torch: precision {precision!r} is not available",
                              f"choose one of: {', '.join(PRECISIONS)}, or drop --backend")
    if nhwc_input:
        raise ConversionError("--nhwc-input applies to edge-sdk's own TFLite emitter", "drop --nhwc-input or --backend")
    if recipe is not None and recipe.keep_float:
        raise ConversionError("--keep-float applies to edge-sdk's own quantiser", "drop --keep-float or --backend")
    start = time.perf_counter()
    module, args = resolved.reference, (resolved.example_input,)
    options = {"backend": "litert-torch"}
    quant_config = None
    if precision == "int8":
        module, quant_config, described = _quantize(module, args, resolved.card, calibration, recipe)
        options |= {"quantizer": QUANTIZER, "calibration": described}
    with _quiet(litert_torch):
        try:
            edge_model = litert_torch.convert(module, args, quant_config=quant_config)
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConversionError(f"litert-torch could not convert {resolved.name}: {reason}",
                                  "run with --debug for litert-torch's traceback") from exc
        with atomic_output(out_path) as tmp:
            edge_model.export(str(tmp))
            tmp.write_bytes(with_metadata(tmp.read_bytes(), resolved.card, precision, options))
    try:
        session = load(out_path, backend="tflite")
        artifact = Artifact(
            path=out_path,
            target="tflite",
            precision=precision,
            size_bytes=out_path.stat().st_size,
            inputs=[_nchw(s) for s in session.inputs],
            outputs=[_nchw(s) for s in session.outputs],
            seconds=time.perf_counter() - start,
            manifest_path=out_path.with_name(out_path.name + ".json"),
            card=resolved.card.to_dict(),
            options=options,
        )
        write_manifest(artifact, packages=("litert-torch", "ai-edge-litert", "torchao"),
                       preprocessing=resolved.card.preprocessing.to_dict())
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return artifact


def _quantize(module, args, card, calibration, recipe):
    """PT2E: export, observe the calibration samples, convert; the QuantConfig litert-torch lowers it with."""
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    from ..quantize import QuantRecipe
    from ..quantize.calibration import calibration_samples, describe_calibration

    recipe = recipe or QuantRecipe()
    random_weights = getattr(module, "random_weights", False)  # calibrated as our own quantiser would be
    samples = calibration_samples(calibration, card.preprocessing, recipe.calibration_samples, random_weights=random_weights)
    batch = len(args[0])
    if len(samples) < batch:
        raise DataError(f"{len(samples)} calibration samples for an input batch of {batch}", "pass at least one batch of samples")
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    prepared = quantize_pt2e.prepare_pt2e(torch.export.export(module, args).module(), quantizer)
    with torch.no_grad():
        # The exported program is specialised to the example's batch size: feed whole batches of it.
        for i in range(0, len(samples) - batch + 1, batch):
            prepared(torch.from_numpy(samples[i : i + batch]))
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    return converted, QuantConfig(pt2e_quantizer=quantizer), describe_calibration(calibration, len(samples), random_weights=random_weights)


def with_metadata(data: bytes, card, precision: str, options: dict) -> bytes:
    """litert-torch's file with the same metadata our emitter writes (model card, labels, how it was quantised),
    so the file describes itself to MediaPipe, Android tooling and `session.classify` without its manifest."""
    from ai_edge_litert import schema_py_generated as schema

    from .tflite.builder import pack_model
    from .tflite.metadata import embed, pack_files

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if any(b.offset for b in model.buffers or []):  # weights stored after the flatbuffer (files over 2 GB): left as written
        return data
    graph = model.subgraphs[0]

    def tensors(indices):  # litert-torch keeps PyTorch's layout: no tensor is NHWC
        return [(graph.tensors[i].name.decode(), tuple(int(d) for d in graph.tensors[i].shape), False) for i in indices]

    quantization = {key: options[key] for key in ("quantizer", "calibration") if key in options} or None
    embedded = embed(card, precision=precision, pixel_input=False, quantization=quantization,
                     inputs=tensors(graph.inputs), outputs=tensors(graph.outputs))
    return pack_files(pack_model(model, embedded.entries), embedded.files)


def _nchw(spec):
    """litert-torch keeps PyTorch's layout: a 4-D tensor of its file is NCHW (the runtime assumes NHWC otherwise)."""
    return replace(spec, layout="NCHW" if len(spec.shape) == 4 else "")


@contextlib.contextmanager
def _quiet(litert_torch):
    """Silence litert-torch's progress lines (printed to stdout, where --json goes); restore the user's setting."""
    shown = litert_torch.config.show_progress
    litert_torch.config.show_progress = False
    try:
        yield
    finally:
        litert_torch.config.show_progress = shown
