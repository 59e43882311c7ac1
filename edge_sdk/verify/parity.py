"""Parity: run the PyTorch reference and the artifact on the same real samples, compare outputs.

The artifact runs through `edge_sdk.runtime` exactly as a user deploys it; the
samples default to real photographs preprocessed per the model card.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import PARITY_PHOTOS, Preprocessing, load_samples
from ..errors import InputError
from ..progress import step
from ..runtime import Session, load
from ..runtime.manifest import read_manifest
from .metrics import OutputParity, compare
from .thresholds import thresholds_for

# Relative noise of a few float32 ulps on every int8 tensor before it is rounded: about what two engines'
# summation orders differ by. Input noise alone underestimates it: FNet's simulation does not move under 1e-6
# on its input, yet moves to 0.78-0.84 with 1e-6 at each of its 129 points, where its files are (0.73-0.87).
ROUNDING_NOISE = 1e-6
# Draws of that noise; the band is the worst: one draw can land on either side of the threshold
# (MobileNetV3-Large's plan in the matrix, input noise: single draws at 0.891-0.912; its files at 0.894-0.898).
ROUNDING_DRAWS = 4
# About one rounding of the input to the file's float type (Gaussian, std of half an ulp, relative): if moving float
# PyTorch's input by that already misses the thresholds, no program computing in that type can meet them. float32
# counts for every precision but fp16 (and CoreML's int8-weights): int8 files compute their float parts in it too. A random EfficientNet-B7
# is there on two of the eight photos: PyTorch float32 vs float64 0.83, under 2^-24 input noise 0.80.
FLOAT_ROUNDING_NOISE = {"fp16": 2.0**-12, "fp32": 2.0**-24}


@dataclass(frozen=True)
class SimulationParity:
    """An int8 artifact beside the PyTorch simulation of its plan, on the same samples.

    predicted_* is what the simulation promised against float; measured_* is what the
    file delivers; artifact_vs_simulation_cosine shows the emitter followed the plan.
    """

    predicted_top1_agreement: float
    measured_top1_agreement: float
    predicted_min_cosine: float
    measured_min_cosine: float
    artifact_vs_simulation_cosine: float  # minimum over samples
    artifact_vs_simulation_median_cosine: float

    def to_dict(self) -> dict:
        return {k: round(v, 6) for k, v in vars(self).items()}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(_cosines(a, b)))


def simulation_parity(reference: np.ndarray, simulated: np.ndarray, artifact: np.ndarray) -> SimulationParity:
    def agree(x):
        return float(np.mean(x.reshape(len(x), -1).argmax(1) == reference.reshape(len(reference), -1).argmax(1)))

    return SimulationParity(agree(simulated), agree(artifact), _min_cosine(reference, simulated),
                            _min_cosine(reference, artifact), _min_cosine(simulated, artifact),
                            float(np.median(_cosines(simulated, artifact))))


@dataclass
class ParityReport:
    artifact: str
    backend: str
    runtime_version: str
    precision: str
    samples: int
    sample_source: str
    outputs: list[OutputParity]
    thresholds: dict
    seconds: float
    notes: list[str] = field(default_factory=list)
    simulation: SimulationParity | None = None
    reference: str = "PyTorch"  # what the outputs were judged against
    unverifiable: str | None = None  # why a failed int8 comparison says nothing (random weights amplifying rounding)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def to_dict(self) -> dict:
        return {
            "artifact": self.artifact,
            "backend": self.backend,
            "runtime_version": self.runtime_version,
            "precision": self.precision,
            "samples": self.samples,
            "sample_source": self.sample_source,
            "passed": self.passed,
            "thresholds": self.thresholds,
            "outputs": [o.to_dict() for o in self.outputs],
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
            "simulation": None if self.simulation is None else self.simulation.to_dict(),
            "reference": self.reference,
            "unverifiable": self.unverifiable,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def table(self):
        """A rich Table: one line per output with pass/fail and the numbers behind it."""
        from rich.table import Table

        title = f"Parity: {Path(self.artifact).name} ({self.backend} {self.runtime_version}, {self.precision}) vs {self.reference}"
        caption = "\n".join([f"{self.samples} samples: {self.sample_source}", *self.notes])
        t = Table(title=title, caption=caption)
        for col in ("output", "result", "max abs", "max rel", "cosine (min)", "SQNR dB", "top-1", "top-5"):
            t.add_column(col, justify="left" if col in ("output", "result") else "right")
        for o in self.outputs:
            verdict = "[green]pass[/green]" if o.passed else "[red]FAIL[/red]: " + "; ".join(o.failures)
            t.add_row(
                o.name,
                verdict,
                f"{o.max_abs:.3g}",
                f"{o.max_rel:.2e}",
                f"{o.min_cosine:.7f}",
                "inf" if o.sqnr_db == float("inf") else f"{o.sqnr_db:.1f}",
                "-" if o.top1_agreement is None else f"{o.top1_agreement:.0%} ({o.top1_decided}/{o.samples} decided)",
                "-" if o.top5_agreement is None else f"{o.top5_agreement:.0%}",
            )
        return t


def check_parity(
    reference,
    artifact,
    samples=None,
    *,
    precision: str | None = None,
    count: int = PARITY_PHOTOS,
    threads: int | None = None,
    card=None,
    simulation=None,
) -> ParityReport:
    """Compare `reference` (nn.Module, torch.export program or model name) with `artifact`.

    `artifact` is an Artifact, a path or an open Session; `samples` is None (the
    bundled photos), a folder of images, a .npy/.npz file or an NCHW array.
    `simulation` (default: the QuantizedModel an int8 Artifact carries, else the one rebuilt
    from the QuantPlan written beside the file) is run on the same samples, so the report
    shows predicted next to measured agreement.
    """
    start = time.perf_counter()
    session = artifact if isinstance(artifact, Session) else load(getattr(artifact, "path", artifact), threads=threads)
    manifest = read_manifest(session.path) or {}
    precision = precision or getattr(artifact, "precision", None) or manifest.get("precision") or "fp32"
    module = _reference_module(reference)
    card = card or getattr(module, "card", None)
    prep = _preprocessing(card, manifest, session)
    with step("Loading the bundled photos" if samples is None else f"Loading samples from {samples}"):
        batch = load_samples(samples, prep, count)
    source = _describe_source(samples, len(batch))
    expected = session.inputs[0].nchw_shape()
    if tuple(batch.shape[1:]) != tuple(d for d in expected[1:]):
        raise InputError(
            f"samples have shape {tuple(batch.shape[1:])} but {session.path.name} takes {tuple(expected[1:])}",
            "pass samples preprocessed to the model's input size",
        )
    with step(f"Running PyTorch and {session.backend} on {len(batch)} samples"):
        ref_outputs = _run_reference(module, batch)
        art_outputs = session.run(batch)
    quantized = precision in ("int8", "int8-weights")
    simulation = simulation if simulation is not None else getattr(artifact, "simulation", None)
    if simulation is None and quantized:
        simulation = _saved_simulation(session.path, module, batch)
    sim_check = None
    if simulation is not None:
        with step(f"Running the int8 simulation on {len(batch)} samples"):
            sim_outputs = _run_reference(simulation, batch)
            sim_check = simulation_parity(ref_outputs[0], sim_outputs[0], art_outputs[0])
    if len(ref_outputs) != len(art_outputs):
        raise InputError(f"the reference gives {len(ref_outputs)} outputs, the artifact {len(art_outputs)}")
    limits = thresholds_for(precision)
    notes, judged_against = [], ref_outputs
    if sim_check is not None and getattr(module, "random_weights", False):
        limits = thresholds_for("int8-simulation")
        judged_against = sim_outputs
        notes.append("random weights: int8 is judged against the PyTorch simulation of its QuantPlan; agreement with "
                     "float is reported, not judged (int8 accuracy needs trained weights: benchmarks/digits_int8.py)")
    names = [s.name for s in session.outputs]
    task = getattr(card, "task", None) or (manifest.get("model") or {}).get("task") or "classification"

    outputs = [compare(n, r, o, limits, classification=task == "classification") for n, r, o in zip(names, judged_against, art_outputs)]
    float16 = _computes_in_float16(session, precision)
    overflow = None
    if any(not np.isfinite(o).all() for o in art_outputs) and all(np.isfinite(r).all() for r in ref_outputs):
        overflow = _float16_overflow(module, batch)
        if overflow:
            outputs[0].failures.append(overflow)
            notes.append(f"{overflow}: a file that computes in float16 cannot hold them; convert it in float32 "
                         "(without --fp16; CoreML int8-weights computes in float16 too, its --int8 in float32)")
    unverifiable, random_weights = None, getattr(module, "random_weights", False)
    if random_weights and overflow and float16:  # no float16 program of these weights exists
        unverifiable = "no float16 program of these weights can hold their activations"
    elif random_weights and not all(o.passed for o in outputs):
        found = _unverifiable(precision, float16,
                              simulation if judged_against is not ref_outputs else None, module,
                              batch, judged_against, ref_outputs, art_outputs, limits=limits, names=names, task=task)
        if found:
            unverifiable, note = found
            notes.append(note)
    if random_weights and quantized and simulation is None and not all(o.passed for o in outputs):
        notes.append("random weights, and no QuantPlan beside this file (another tool quantised it, or its .quantplan.json "
                     "was left behind): it is judged against float PyTorch, which random networks make a weak test, as they "
                     "amplify int8 rounding (edge-sdk's own int8 files are judged against their plan's simulation); verify "
                     "it with trained weights")
    return ParityReport(
        artifact=str(session.path),
        backend=session.backend,
        runtime_version=session.runtime_version,
        precision=precision,
        samples=len(batch),
        sample_source=source,
        outputs=outputs,
        thresholds=limits.to_dict(),
        seconds=time.perf_counter() - start,
        notes=notes,
        simulation=sim_check,
        reference="int8 simulation" if judged_against is not ref_outputs else "PyTorch",
        unverifiable=unverifiable,
    )


# simulation or module -> {(samples digest, kind, limits, ...): band}. A band depends on them alone, so the files of
# one model (ONNX, TFLite, CoreML) share it: EfficientNet-B6's int8 band takes ~200 s.
_BANDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _saved_simulation(path: Path, module, batch: np.ndarray):
    """The QuantPlan that `convert` wrote beside an int8 file, rebuilt into its simulation (None without one), so a
    file checked by path is judged as `convert` and `verify` judge it: on random weights, against its plan."""
    import torch

    from ..api import resolve_model, saved_simulation

    return saved_simulation(path, resolve_model(module, example_input=torch.from_numpy(batch[:1])))


def _computes_in_float16(session: Session, precision: str) -> bool:
    """fp16 files, and CoreML int8-weights programs (float16 compute precision, converters/coreml.py)."""
    return precision == "fp16" or (session.backend.startswith("coreml") and precision == "int8-weights")


def _unverifiable(precision, float16, simulation, module, batch, judged_against, reference, artifact, *, limits, names, task):
    """(reason, note) when a failed comparison on random weights is within what rounding alone does, else None.

    int8 (judged against its simulation): the simulation moved by a few float32 ulps at its int8 points. Every
    precision: float PyTorch moved by one rounding of its input to the file's float type. fp32: the file is as
    close to float64 PyTorch as float32 PyTorch is. The report still fails: a wrong file lands in the same band.
    """
    if simulation is not None:
        band = _cached_band(simulation, batch, ("int8", limits, tuple(names), task), lambda: _rounding_band(
            lambda seed: _jittered(simulation, batch, seed), judged_against, limits=limits, names=names, task=task),
            "Measuring how far rounding alone moves the int8 simulation")
        if not band.passed:  # any criterion: a decided top-1 that rounding alone flips is no evidence either
            failed = "".join(f"; {f}" for f in band.failures if not f.startswith(("cosine", "SQNR")))
            reason = (f"the simulation itself moves to cosine {band.min_cosine:.3f} (SQNR {band.sqnr_db:.1f} dB{failed}) "
                      f"when every tensor moves by {ROUNDING_NOISE:g} relative before it is rounded to int8")
            return reason, (f"{reason}, a few float32 ulps: these random weights amplify rounding so much that this "
                            "int8 file cannot be verified against its plan (a file with a wrong scale lands in the same "
                            "band); verify with trained weights")
    float_type = "fp16" if float16 else "fp32"
    noise = FLOAT_ROUNDING_NOISE[float_type]
    band = _cached_band(module, batch, (float_type, limits, tuple(names), task), lambda: _rounding_band(
        lambda seed: _run_reference(module, _input_noise(batch, noise, seed)), reference,
        limits=limits, names=names, task=task), f"Measuring how far one {float_type} rounding moves PyTorch")
    if band.passed and precision == "fp32":
        return _as_exact_as_pytorch(module, batch, reference, artifact)
    if band.passed and float16:
        return _stored_in_float16(module, batch, reference, precision, limits=limits, names=names, task=task)
    if band.passed:
        return None
    type_name = "float16" if float_type == "fp16" else "float32"
    reason = (f"float PyTorch itself moves to cosine {band.min_cosine:.5f} (SQNR {band.sqnr_db:.1f} dB) when its input "
              f"moves by 2^{np.log2(noise):.0f} relative")
    return reason, (f"{reason}, about one {type_name} rounding: these random weights amplify rounding so much that no "
                    f"{type_name} program of them meets the {precision} thresholds; verify with trained weights")


def _stored_in_float16(module, batch, reference, precision, *, limits, names, task):
    """(reason, note) when float PyTorch with its weights and every layer's output rounded to float16, as a float16
    program stores them, already misses the thresholds, else None (a random RedNet-50 with undamped residual
    branches: cosine 0.99894 with the outputs alone rounded; its CoreML file 0.99869)."""
    import copy

    import torch

    def to_float16(_module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            return output.half().float()
        return None

    def measure():
        stored = copy.deepcopy(module)
        with torch.no_grad():
            for tensor in [*stored.parameters(), *stored.buffers()]:
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
        with _leaf_hooks(stored, lambda name: to_float16) as hooked:
            if not hooked:  # a program without modules: nothing to round
                return None
            outputs = _run_reference(stored, batch.astype(np.float16).astype(np.float32))
        worst = [compare(n, r, o, limits, classification=task == "classification") for n, r, o in zip(names, reference, outputs)]
        return min(worst, key=lambda p: p.min_cosine)

    band = _cached_band(module, batch, ("float16 layers", limits, tuple(names), task), measure,
                        "Measuring PyTorch with every layer stored in float16")
    if band is None or band.passed:
        return None
    reason = (f"float PyTorch with its weights and every layer's output rounded to float16 lands at cosine {band.min_cosine:.5f} "
              f"(SQNR {band.sqnr_db:.1f} dB)")
    return reason, (f"{reason}: these random weights amplify float16 rounding so much that no float16 program of "
                    f"them meets the {precision} thresholds; verify with trained weights")


@contextlib.contextmanager
def _leaf_hooks(module, make_hook):
    """Forward hooks `make_hook(name)` on every leaf module of `module` (none on a module without submodules)."""
    import torch

    leaves = [(n, m) for n, m in module.named_modules() if n and not any(m.children())] if isinstance(module, torch.nn.Module) else []
    handles = [m.register_forward_hook(make_hook(n)) for n, m in leaves]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def _as_exact_as_pytorch(module, batch, reference, artifact):
    """(reason, note) when the fp32 file is no further from float64 PyTorch than twice float32 PyTorch is, else None.

    Summation order alone separates two float32 programs by up to the sum of their errors: a random ResNet-152
    with undamped residual branches was 8.9e-5 from float64 in PyTorch itself, its files 1.2-1.6e-4 from PyTorch.
    """
    import copy

    def run_float64():
        try:
            return _run_reference(copy.deepcopy(module).double(), batch.astype(np.float64))
        except (RuntimeError, TypeError, AttributeError):  # a program with float32 constants baked in
            return None

    exact = _cached_band(module, batch, ("float64",), run_float64, "Running PyTorch in float64")
    if exact is None:
        return None

    def error(outputs):
        return max(float(np.abs(o - e).max()) / (float(np.abs(e).max()) or 1.0) for o, e in zip(outputs, exact))

    own, file = error(reference), error(artifact)
    if not np.isfinite(file) or file > 2 * own:
        return None
    reason = f"float32 PyTorch is itself {own:.2e} from float64 PyTorch and the file {file:.2e} (relative error)"
    return reason, (f"{reason}: the file computes this network as exactly as PyTorch does, and two such float32 "
                    "programs can differ by the sum of their errors: more than the fp32 threshold on these weights")


def _cached_band(owner, batch: np.ndarray, key: tuple, measure, title: str) -> OutputParity:
    """`measure()` once per owner (a simulation or module) and samples: the files of one model share the band."""
    bands = _BANDS.setdefault(owner, {})
    key = (hashlib.sha256(batch.tobytes()).hexdigest(), batch.shape, *key)
    if key not in bands:
        with step(title):
            bands[key] = measure()
    return bands[key]


def _rounding_band(run, outputs, *, limits, names, task) -> OutputParity:
    """The worst output of `run(seed)` (outputs under one draw of rounding noise) against `outputs`, over
    ROUNDING_DRAWS draws: how far rounding alone moves this network. A draw that fails the thresholds
    (by any criterion) is worse than one that passes; within each, the lower cosine is worse."""
    worst = None
    for seed in range(ROUNDING_DRAWS):
        for n, s, m in zip(names, outputs, run(seed)):
            p = compare(n, s, m, limits, classification=task == "classification")
            worst = p if worst is None or (p.passed, p.min_cosine) < (worst.passed, worst.min_cosine) else worst
    return worst


def _jittered(simulation, batch, seed: int) -> list[np.ndarray]:
    from ..quantize.simulate import rounding_jitter

    with rounding_jitter(simulation, ROUNDING_NOISE, seed):
        return _run_reference(simulation, batch)


def _input_noise(batch: np.ndarray, relative: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(batch.shape).astype(batch.dtype)
    return batch * (1 + relative * noise)


def _reference_module(reference):
    import torch

    if isinstance(reference, str):
        from ..models import create_model

        return create_model(reference)
    if isinstance(reference, torch.export.ExportedProgram):
        return reference.module()
    if isinstance(reference, torch.nn.Module) or callable(reference):
        return reference
    raise TypeError(f"reference must be an nn.Module, a torch.export program or a model name, not {type(reference).__name__}")


def _preprocessing(card, manifest: dict, session: Session) -> Preprocessing:
    if card is not None:
        return card.preprocessing
    if manifest.get("preprocessing"):
        p = manifest["preprocessing"]
        return Preprocessing(tuple(p["size"]), tuple(p["mean"]), tuple(p["std"]), p["crop_pct"], p["channels"], p["interpolation"])
    shape = session.inputs[0].nchw_shape()
    if len(shape) != 4 or shape[2] is None or shape[3] is None:
        raise InputError(f"cannot make image samples for input shape {shape}", "pass samples as a .npy file")
    return Preprocessing(size=(shape[2], shape[3]), channels=shape[1])


def _run_reference(module, batch: np.ndarray) -> list[np.ndarray]:
    """Run the float reference one sample at a time (captured programs may have a fixed batch); a float64
    module on a float64 batch keeps its float64 outputs."""
    import torch

    per_sample = []
    with torch.no_grad():
        for x in batch:
            out = module(torch.from_numpy(x[None].copy()))
            out = out if isinstance(out, (tuple, list)) else (out,)
            per_sample.append([o.detach().numpy() if o.dtype == torch.float64 else o.detach().float().numpy() for o in out])
    return [np.concatenate(parts, axis=0) for parts in zip(*per_sample)]


def _float16_overflow(module, batch: np.ndarray) -> str | None:
    """Why a file's output is inf / nan when PyTorch's is finite, if float16 explains it: the module whose output
    goes furthest beyond float16's largest value (ConvMixer-768/32 with random weights: 2.7e5 in its last layer)."""
    import torch

    peaks: dict[str, float] = {}

    def record(name):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                peaks[name] = max(peaks.get(name, 0.0), float(output.detach().abs().max()))
        return hook

    with _leaf_hooks(module, record):
        _run_reference(module, batch)
    if not peaks:
        return None
    name = max(peaks, key=peaks.get)
    largest = float(np.finfo(np.float16).max)
    if peaks[name] <= largest:
        return None
    return f"float16 overflow: PyTorch's activations reach {peaks[name]:.3g} (in {name}), beyond float16's largest {largest:g}"


def _describe_source(samples, n: int) -> str:
    if samples is None:
        return f"{n} real photographs bundled with scikit-image"
    if isinstance(samples, np.ndarray):
        return f"{n} samples from an array"
    return f"{n} samples from {samples}"
