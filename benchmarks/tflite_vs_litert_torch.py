"""Our TFLite converter against Google's litert-torch 0.10, side by side in one run (issue #5).

    python benchmarks/tflite_vs_litert_torch.py [--json results.json] [--runs 200] [--models mobilenet_v2 ...]

litert-torch is not an edge-sdk dependency (it brings jax and transformers, ~2 GB), so the
script keeps it in a throw-away venv (--venv, default ~/.cache/edge-sdk/litert-torch-0.10,
reused when it is complete): torch==2.13.0 first (the CPU wheel; a bare torch pulls CUDA),
then litert-torch==0.10.0, then this checkout editable with its tflite extra. It then
re-runs itself with that venv's Python, so both converters see the same torch, the same
model weights and the same calibration samples, and both files run in the same
ai-edge-litert interpreter on 1 thread.

Per model and precision it reports conversion time, file size, latency (median and p90,
the two tools' runs interleaved in rounds so that load from other processes hits both
alike), cosine against PyTorch float on real photos, and each file's op histogram; then
the end-to-end wall time of `edge-sdk convert mobilenet_v2 --target tflite --int8`
(calibrate, emit, parity) beside the same command with `--backend litert-torch`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = Path.home() / ".cache" / "edge-sdk" / "litert-torch-0.10"
LITERT_TORCH = "litert-torch==0.10.0"
TORCH = "torch==2.13.0"
MODELS = ("mobilenet_v2", "mobilenet_v3_large", "efficientnet_lite0")
BUSY_LOAD = 1.5  # a 1-minute load average above this on 2 cores means other work shares the CPU: the numbers say so
# Issue #5's targets: ours / litert-torch latency, int8 / float32 size, end-to-end seconds.
MAX_LATENCY_RATIO, MAX_SIZE_RATIO, MAX_END_TO_END_S = 1.0, 0.27, 10.0
# (key, tool, precision, io): the files converted per model; io None is the tool's default.
VARIANTS = (
    ("ours fp32", "edge-sdk", "fp32", None),
    ("litert-torch fp32", "litert-torch", "fp32", None),
    ("ours int8", "edge-sdk", "int8", None),
    ("ours int8 (int8 I/O)", "edge-sdk", "int8", "int8"),
    ("litert-torch int8", "litert-torch", "int8", None),
)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if importlib.util.find_spec("litert_torch") is None:
        python = ensure_venv(args.venv)
        print(f"re-running in {args.venv}", flush=True)
        os.execv(python, [str(python), str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)])
    return run(args)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"throw-away venv for litert-torch (default {DEFAULT_VENV})")
    p.add_argument("--models", nargs="+", default=list(MODELS), help=f"zoo models (default: {' '.join(MODELS)})")
    p.add_argument("--runs", type=int, default=200, help="timed runs per file, split over --rounds (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up runs per file before its first round (default 20)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds over the files of a model (default 4)")
    p.add_argument("--out", type=Path, default=Path("edge-sdk-out/litert-torch-bench"), help="folder for the converted files")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                   help="skip timing the `edge-sdk convert mobilenet_v2 --target tflite --int8` command")
    return p


def ensure_venv(venv: Path) -> Path:
    """The venv's Python: created and filled on first use, reused after; this checkout's install is refreshed each time."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {sys.executable} (Python {sys.version.split()[0]})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    steps = [["-e", f"{REPO}[tflite]"]]  # editable: the checkout's current code and its extra's current dependencies
    if not _has_litert_torch(python):
        steps[:0] = [[TORCH], [LITERT_TORCH]]  # torch first: a bare torch requirement pulls a multi-GB CUDA build
    for requirement in steps:
        print(f"{venv.name}: pip install {' '.join(requirement)}", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirement], check=True)
    if not _has_litert_torch(python):
        raise SystemExit(f"{venv} still lacks {LITERT_TORCH} with {TORCH}; remove the folder and run again")
    return python


def _has_litert_torch(python: Path) -> bool:
    """litert-torch 0.10 imports in the venv, beside torch 2.13."""
    probe = ("import json, importlib.metadata as m, litert_torch; "
             "print(json.dumps([m.version('litert-torch'), m.version('torch')]))")
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if found.returncode != 0:
        return False
    litert, torch_version = json.loads(found.stdout.strip().splitlines()[-1])
    return litert == LITERT_TORCH.split("==")[1] and torch_version.split("+")[0] == TORCH.split("==")[1]


def run(args) -> int:
    """Convert, time and compare every model; print the tables; write the JSON."""
    import importlib.metadata as metadata

    from edge_sdk.verify.host import describe_host

    started = time.perf_counter()
    result = {
        "host": describe_host(),
        "versions": {p: metadata.version(p) for p in ("edge-sdk", "torch", "litert-torch", "ai-edge-litert", "numpy")},
        "settings": {"threads": 1, "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds},
        "load_average": {"start": _load()},
        "models": {},
    }
    for name in args.models:
        result["models"][name] = compare_model(name, args)
    if args.end_to_end:
        result["end_to_end"] = end_to_end(args.out / "end-to-end")
    result["load_average"]["end"] = _load()
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["targets"] = targets(result)
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def compare_model(name: str, args) -> dict:
    """Both tools on one model: the same module object, the same calibration array, the same photos for parity."""
    import warnings

    from edge_sdk.quantize import CalibrationWarning, QuantRecipe
    from edge_sdk.quantize.calibration import calibration_samples

    import edge_sdk

    model = edge_sdk.create_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # the stand-in photos are the point here: both tools get them
        samples = calibration_samples(None, model.card.preprocessing, QuantRecipe().calibration_samples)
    files, plan = {}, None
    for key, tool, precision, io in VARIANTS:
        print(f"{name}: converting {key}", flush=True)
        quant = {} if precision == "fp32" else {"plan": plan} if io else {"calibration": samples}
        start = time.perf_counter()
        stem = "_".join(re.findall(r"[A-Za-z0-9-]+", key))  # "ours int8 (int8 I/O)" -> ours_int8_int8_I_O
        artifact = edge_sdk.convert(model, "tflite", out=args.out / f"{name}.{stem}.tflite",
                                    precision=precision, backend=tool, **quant, **({"io": io} if io else {}))
        seconds = time.perf_counter() - start
        if tool == "edge-sdk" and precision == "int8" and plan is None:
            plan = artifact.simulation.plan  # the int8-I/O variant is emitted from the same plan: no second calibration
        files[key] = {"tool": tool, "precision": precision, "io": artifact.inputs[0].dtype, "path": str(artifact.path),
                      "size_bytes": artifact.size_bytes, "convert_seconds": round(seconds, 2),
                      "reused_plan": bool(io), **op_histogram(artifact.path), **xnnpack_coverage(artifact.path),
                      "parity": _parity(model, artifact)}
    load_before = _load()
    for key, latency in interleaved_latency({k: f["path"] for k, f in files.items()}, args).items():
        files[key]["latency_ms"] = latency
    return {"calibration_samples": len(samples), "load_average_during_timing": [load_before, _load()], "files": files}


def _parity(model, artifact) -> dict:
    """Cosine and top-1 agreement against PyTorch float on 8 bundled photos (the file as deployed, 1 thread)."""
    from edge_sdk.verify import check_parity

    report = check_parity(model, artifact, count=8, threads=1)
    out, sim = report.outputs[0], report.simulation
    return {"passed": report.passed, "judged_against": report.reference,
            "min_cosine_vs_float": round(sim.measured_min_cosine if sim else out.min_cosine, 6),
            "top1_agreement_vs_float": round(sim.measured_top1_agreement if sim else out.top1_agreement, 3)}


def interleaved_latency(paths: dict[str, str], args) -> dict[str, dict]:
    """Median (with its 95 % CI) and p90 per file, timed by edge-sdk's benchmark in rounds that alternate the files' order."""
    from edge_sdk.runtime import load
    from edge_sdk.verify import benchmark
    from edge_sdk.verify.bench import latency_stats, median_ci

    sessions = {key: load(path, threads=1) for key, path in paths.items()}
    per_round = max(1, args.runs // args.rounds)
    times: dict[str, list[float]] = {key: [] for key in paths}
    for r in range(args.rounds):
        order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
        for key in order:
            times[key] += benchmark(sessions[key], runs=per_round, warmup=args.warmup if r == 0 else 2, threads=1).samples_ms
    return {key: {k: round(v, 4) for k, v in latency_stats(t).items() if k in ("min", "p50", "p90", "mean")}
            | {"p50_ci95": [round(v, 4) for v in median_ci(t)], "runs": len(t)} for key, t in times.items()}


def op_histogram(path) -> dict:
    """Builtin ops by count, and the QUANTIZE / DEQUANTIZE that sit inside the graph rather than at its inputs/outputs."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    ops, inside, islands = Counter(), Counter(), 0
    for graph in model.subgraphs:
        inputs, outputs = {int(i) for i in graph.inputs}, {int(i) for i in graph.outputs}
        hard_swish = [op for op in graph.operators if names[model.operatorCodes[op.opcodeIndex].builtinCode] == "HARD_SWISH"]
        island_ends = {int(t) for op in hard_swish for t in (*op.inputs, *op.outputs)}
        for op in graph.operators:
            name = names[model.operatorCodes[op.opcodeIndex].builtinCode]
            ops[name] += 1
            at_edge = (name == "QUANTIZE" and op.inputs[0] in inputs) or (name == "DEQUANTIZE" and op.outputs[0] in outputs)
            weights = name == "DEQUANTIZE" and op.inputs[0] not in inputs and _is_constant(model, graph, op.inputs[0])
            if name in ("QUANTIZE", "DEQUANTIZE") and not at_edge and not weights:
                inside[name] += 1
                islands += int(op.outputs[0] if name == "DEQUANTIZE" else op.inputs[0]) in island_ends
    return {"ops": dict(ops.most_common()), "qdq_inside": dict(inside), "qdq_hard_swish_islands": islands}


def xnnpack_coverage(path) -> dict:
    """How XNNPACK splits the file (1 thread): its partitions, and the ops left to TFLite's slower builtin kernels.

    Every partition boundary costs a hand-over, and an op XNNPACK declines (e.g. an int8 kind it has no kernel
    for) runs TFLite's reference code: the op histogram alone does not show it. Read through the interpreter's
    node list (`_get_ops_details`, private but stable in ai-edge-litert 2.x): an op is left out when its outputs
    reach a delegate node, a graph output or another left-out op without being a delegate node's output.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    produced = {int(t) for n in delegates for t in n["outputs"]}
    needed = {int(t) for n in delegates for t in n["inputs"]} | {int(d["index"]) for d in interpreter.get_output_details()}
    left, changed = {}, True
    while changed:
        changed = False
        for n in nodes:
            outputs = {int(t) for t in n["outputs"]}
            if n["op_name"] != "DELEGATE" and n["index"] not in left and outputs & needed and not outputs & produced:
                left[n["index"]] = n["op_name"]
                needed |= {int(t) for t in n["inputs"]}
                changed = True
    return {"xnnpack_partitions": len(delegates), "not_delegated": dict(Counter(left.values()))}


def _is_constant(model, graph, tensor: int) -> bool:
    """A tensor with data in its buffer (e.g. float16 weights that a DEQUANTIZE expands at load time)."""
    buffer = model.buffers[graph.tensors[tensor].buffer]
    return buffer.data is not None and len(buffer.data) > 0


def end_to_end(folder: Path) -> dict:
    """Wall time of the user's command (a fresh process: imports, calibration, emit, parity), ours and litert-torch's."""
    cli = Path(sys.executable).with_name("edge-sdk")
    timed = {}
    for label, extra in (("ours", []), ("litert-torch", ["--backend", "litert-torch"])):
        shown = ["edge-sdk", "convert", "mobilenet_v2", "--target", "tflite", "--int8", *extra]
        print(f"end to end: {' '.join(shown)}", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json") as report:
            load_before = _load()
            start = time.perf_counter()
            done = subprocess.run([str(cli), *shown[1:], "--out", str(folder / label), "--json", report.name],
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - start
            payload = json.loads(Path(report.name).read_text() or "{}")
        timed[label] = {"command": " ".join(shown), "seconds": round(seconds, 2), "exit_code": done.returncode,
                        "parity_passed": (payload.get("parity") or {}).get("passed"), "load_average": [load_before, _load()],
                        **({"error": done.stderr.strip().splitlines()[-1]} if done.returncode not in (0, 1) else {})}
    return timed


def targets(result: dict) -> list[dict]:
    """Issue #5's checks on the measured numbers."""
    checks = []
    for name, m in result["models"].items():
        f = m["files"]
        # like with like: litert-torch's int8 file takes and gives int8, so ours with int8 I/O is the one compared
        for ours, label in (("ours fp32", "fp32"), ("ours int8 (int8 I/O)", "int8 (both int8 I/O)")):
            theirs = f"litert-torch {label.split()[0]}"
            ratio = f[ours]["latency_ms"]["p50"] / f[theirs]["latency_ms"]["p50"]
            checks.append({"check": f"{name} {label}: our p50 / litert-torch's", "value": round(ratio, 3),
                           "target": f"<= {MAX_LATENCY_RATIO}", "met": ratio <= MAX_LATENCY_RATIO})
        size = f["ours int8"]["size_bytes"] / f["ours fp32"]["size_bytes"]
        checks.append({"check": f"{name}: our int8 size / our fp32 size", "value": round(size, 3),
                       "target": f"<= {MAX_SIZE_RATIO}", "met": size <= MAX_SIZE_RATIO})
        stray = sum(f["ours int8"]["qdq_inside"].values()) - f["ours int8"]["qdq_hard_swish_islands"]
        checks.append({"check": f"{name}: QUANTIZE/DEQUANTIZE inside our int8 file, besides hard-swish float islands",
                       "value": stray, "target": "0", "met": stray == 0})
    ours = (result.get("end_to_end") or {}).get("ours")
    if ours:
        checks.append({"check": "edge-sdk convert mobilenet_v2 --target tflite --int8, wall seconds", "value": ours["seconds"],
                       "target": f"< {MAX_END_TO_END_S:g}", "met": ours["exit_code"] == 0 and ours["seconds"] < MAX_END_TO_END_S})
    return checks


def report(result: dict) -> None:
    """One table of the comparison, op histograms per model, the end-to-end times and the targets."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)  # a log file gets the whole table, not 80 columns
    host, load = result["host"], result["load_average"]
    caption = (f"{host['cpu']} · {host['cores']} cores · 1 thread · ai-edge-litert {result['versions']['ai-edge-litert']} "
               f"(XNNPACK) · torch {result['versions']['torch']} · load average 1/5/15 min {load['start']} at start, "
               f"{load['end']} at end")
    table = Table(title=f"edge-sdk {result['versions']['edge-sdk']} vs litert-torch {result['versions']['litert-torch']}: "
                        "TFLite files of the same weights", caption=caption)
    for col in ("model", "file", "I/O", "p50 ms", "p50 95% CI", "p90 ms", "p50 ours/theirs", "size MB", "int8/fp32 size",
                "convert s", "cosine vs float", "Q/DQ inside", "XNNPACK partitions"):
        table.add_column(col, justify="left" if col in ("model", "file", "I/O") else "right")
    for name, m in result["models"].items():
        f = m["files"]
        for key, entry in f.items():
            theirs = f[f"litert-torch {entry['precision']}"]
            fp32 = f[f"{'ours' if entry['tool'] == 'edge-sdk' else 'litert-torch'} fp32"]
            inside = sum(entry["qdq_inside"].values())
            table.add_row(
                name if key == next(iter(f)) else "", key, entry["io"],
                f"{entry['latency_ms']['p50']:.2f}", "{:.2f}-{:.2f}".format(*entry["latency_ms"]["p50_ci95"]),
                f"{entry['latency_ms']['p90']:.2f}",
                "" if entry["tool"] != "edge-sdk" else f"{entry['latency_ms']['p50'] / theirs['latency_ms']['p50']:.2f}",
                f"{entry['size_bytes'] / 1e6:.2f}",
                "" if entry["precision"] == "fp32" else f"{entry['size_bytes'] / fp32['size_bytes']:.3f}",
                f"{entry['convert_seconds']:.1f}" + (" (plan)" if entry["reused_plan"] else ""),
                f"{entry['parity']['min_cosine_vs_float']:.5f}",
                "-" if entry["precision"] == "fp32" else (f"[red]{inside}[/red]" if inside else "0"),
                str(entry["xnnpack_partitions"]),
                end_section=key == list(f)[-1],
            )
    console.print(table)
    for name, m in result["models"].items():
        hist = Table(title=f"{name}: builtin ops per file")
        hist.add_column("op")
        for key in m["files"]:
            hist.add_column(key, justify="right")
        counts = [f["ops"] for f in m["files"].values()]
        for op in sorted({op for c in counts for op in c}, key=lambda op: -max(c.get(op, 0) for c in counts)):
            hist.add_row(op, *(str(c.get(op, "")) for c in counts))
        hist.add_section()
        hist.add_row("[dim]not delegated to XNNPACK[/dim]",
                     *(", ".join(f"{n} {op}" for op, n in f["not_delegated"].items()) or "-" for f in m["files"].values()))
        console.print(hist)
    for label, e in (result.get("end_to_end") or {}).items():
        console.print(f"end to end, {label}: [bold]{e['seconds']:.1f} s[/bold] wall for `{e['command']}` "
                      f"(exit {e['exit_code']}, parity {'passed' if e['parity_passed'] else e['parity_passed']}; "
                      f"load {e['load_average'][0]} before)" + (f" error: {e['error']}" if "error" in e else ""))
    for c in result["targets"]:
        console.print(f"{'[green]met[/green]' if c['met'] else '[red]MISSED[/red]'}  {c['check']}: {c['value']} (target {c['target']})")
    busiest = max(v[0] for v in (load["start"], load["end"]))
    if busiest > BUSY_LOAD:
        console.print(f"[yellow]warning:[/yellow] 1-minute load average reached {busiest} on {host['cores']} cores: other "
                      "processes shared the CPU, so absolute times are inflated (the interleaved rounds keep the ratios fair)")
    console.print(f"{result['seconds']:.0f} s in all")


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


if __name__ == "__main__":
    sys.exit(main())
