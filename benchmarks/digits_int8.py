"""int8 on real labels: train on scikit-learn's digits, quantise with our QuantPlan, compare with onnxruntime.

    python benchmarks/digits_int8.py [--models mobilenet_v2_035 mobilenet_v3_large] [--epochs 12]

For each model: train (seconds on 2 cores), export float ONNX, quantise with our plan
(simulated in PyTorch, then emitted as ONNX QDQ), and quantise the same float ONNX with
onnxruntime's `quantize_static` (QDQ, per-channel) on the same calibration samples.
Printed per model, on the held-out split: accuracy, top-1 agreement with float,
latency (onnxruntime or ai-edge-litert, 1 thread, batch 1, median) and file size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from edge_sdk.converters import onnx as onnx_converter
from edge_sdk.converters import tflite as tflite_converter
from edge_sdk.quantize import QuantRecipe, quantize

import edge_sdk
from edge_sdk import runtime
from edge_sdk.graph import capture
from edge_sdk.verify import benchmark

IMG_SIZE = 32
# MobileNetV3-Large diverges at the 1e-2 that trains MobileNetV2 fastest.
LEARNING_RATES = {"mobilenet_v3_large": 3e-3}
MEAN, STD = 0.5, 0.5


@dataclass
class Row:
    model: str
    variant: str
    accuracy: float  # percent on the held-out split
    agreement: float  # top-1 agreement with float, percent
    latency_ms: float | None
    size_kb: float | None
    failed: str | None = None  # the baseline's file did not run (the other tool's error, first line)


def digits_split(img_size: int = IMG_SIZE, seed: int = 0):
    """Digits as 3-channel img_size x img_size float32 NCHW, normalised; a stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    x = ((x.repeat(1, 3, 1, 1) - MEAN) / STD).numpy()
    return train_test_split(x, digits.target, test_size=0.2, random_state=seed, stratify=digits.target)


def train(name: str, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int = 0) -> torch.nn.Module:
    """AdamW + one-cycle schedule with small random shifts, batch 32.

    Run with torch.set_num_threads(1): on a shared 2-core machine more threads made
    each step 50x slower (spin-waiting), not faster.
    """
    torch.manual_seed(seed)
    model = edge_sdk.create_model(name, num_classes=10, img_size=x.shape[-1])
    lr = LEARNING_RATES.get(name, 1e-2)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 32):
            idx = order[i : i + 32]
            batch = _shift(xt[idx], gen)
            loss = F.cross_entropy(model(batch), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def _shift(x: torch.Tensor, gen: torch.Generator, pixels: int = 2) -> torch.Tensor:
    dx, dy = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def ort_session(path: Path):
    import onnxruntime as ort

    from edge_sdk.runtime.onnxruntime_backend import session_options  # exact int8 on AVX2 CPUs too

    return ort.InferenceSession(str(path), session_options(threads=1), providers=["CPUExecutionProvider"])


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort_session(path)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def ort_latency_ms(path: Path, x: np.ndarray, runs: int = 300) -> float:
    session = ort_session(path)
    feed = {session.get_inputs()[0].name: x[:1]}
    for _ in range(30):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def artifact_logits(path: Path, x: np.ndarray) -> np.ndarray:
    return ort_logits(path, x) if path.suffix == ".onnx" else runtime.load(path, threads=1).run(x)[0]


def latency_ms(path: Path, x: np.ndarray) -> float:
    if path.suffix == ".onnx":
        return ort_latency_ms(path, x)
    return benchmark(path, runs=300, warmup=20, threads=1).latency_ms["p50"]


def ort_quantize_static(float_path: Path, out_path: Path, calib: np.ndarray, activation_type: str) -> Path:
    """onnxruntime's own static QDQ quantisation, per channel, on the same calibration samples."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=getattr(QuantType, activation_type), weight_type=QuantType.QInt8)
    return out_path


def evaluate(name: str, *, epochs: int, calib_count: int = 256, latency: bool = True, ort_baseline: bool = True,
             other_observers=("minmax", "percentile"), workdir: Path, split=None) -> list[Row]:
    """Train `name` on digits and return the comparison rows (float, ours simulated / onnxruntime, theirs)."""
    x_train, x_test, y_train, y_test = split or digits_split()
    model = train(name, x_train, y_train, epochs=epochs)
    graph = capture(model, torch.from_numpy(x_test[:1]))
    calib = np.ascontiguousarray(x_train[:calib_count])
    float_logits = graph.module(torch.from_numpy(x_test))[0].detach().numpy()
    qmodel = quantize(graph, calib, QuantRecipe(calibration_samples=calib_count))
    sim_logits = qmodel.predict(x_test)

    ours_path = onnx_converter.convert(graph, workdir / f"{name}_int8.onnx", precision="int8", plan=qmodel.plan).path
    ours_tflite = tflite_converter.convert(graph, workdir / f"{name}_int8.tflite", precision="int8", plan=qmodel.plan).path
    variants = [("ours int8 (simulated)", None, sim_logits), ("ours int8 (onnxruntime)", ours_path, None),
                ("ours int8 (tflite, same plan)", ours_tflite, None)]
    for observer in other_observers:  # the default observer is the one that measures best here
        logits = quantize(graph, calib, QuantRecipe(observer=observer, calibration_samples=calib_count)).predict(x_test)
        variants.append((f"ours int8 (simulated, {observer})", None, logits))
    if ort_baseline:
        float_path = onnx_converter.convert(graph, workdir / f"{name}.onnx").path
        variants.insert(0, ("float (onnxruntime)", float_path, None))
        for act in ("QInt8", "QUInt8"):
            theirs = ort_quantize_static(float_path, workdir / f"{name}_ort_{act}.onnx", calib, act)
            variants.append((f"onnxruntime quantize_static {act[1:].lower()} act", theirs, None))
    reference = float_logits.argmax(1)
    rows = [Row(name, "float (PyTorch)", _pct(reference == y_test), 100.0, None, None)]
    for variant, path, logits in variants:
        if logits is None and variant.startswith("onnxruntime quantize_static"):
            try:  # another tool's file: its failure is a result to report, not a reason to lose the others
                logits = artifact_logits(path, x_test)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail / RuntimeException types
                rows.append(Row(name, variant, float("nan"), float("nan"), None, path.stat().st_size / 1024,
                                failed=str(exc).splitlines()[0][-160:]))
                continue
        logits = artifact_logits(path, x_test) if logits is None else logits
        pred = logits.argmax(1)
        rows.append(Row(name, variant, _pct(pred == y_test), _pct(pred == reference),
                        latency_ms(path, x_test) if (latency and path) else None,
                        path.stat().st_size / 1024 if path else None))
    return rows


def _pct(mask: np.ndarray) -> float:
    return 100.0 * float(np.mean(mask))


def table(rows: list[Row]) -> str:
    lines = [f"{'model':20s} {'variant':40s} {'acc %':>7s} {'agree %':>8s} {'ms':>7s} {'KB':>7s}"]
    for r in rows:
        ms = f"{r.latency_ms:7.3f}" if r.latency_ms is not None else f"{'':>7s}"
        kb = f"{r.size_kb:7.0f}" if r.size_kb is not None else f"{'':>7s}"
        lines.append(f"{r.model:20s} {r.variant:40s} {r.accuracy:7.2f} {r.agreement:8.2f} {ms} {kb}"
                     + (f"  failed to run: {r.failed}" if r.failed else ""))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2_035", "mobilenet_v3_large"])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--calib", type=int, default=256, help="calibration samples (from the training split)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split = digits_split()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            start = time.perf_counter()
            rows += evaluate(name, epochs=args.epochs, calib_count=args.calib, workdir=Path(tmp), split=split)
            print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
