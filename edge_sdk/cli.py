"""The `edge-sdk` command: a thin layer over the Python API.

Exit codes: 0 success, 1 a check failed (parity), 2 bad input or a failed step
(one message, no traceback unless --debug), 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import warnings
from pathlib import Path

from .errors import EdgeSDKError, InputError
from .progress import console, set_progress

EXIT_OK, EXIT_CHECK_FAILED, EXIT_ERROR = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_ERROR
    set_progress(False if args.json_out is not None else True)
    warnings.showwarning = _warning
    try:
        return args.handler(args)
    except EdgeSDKError as exc:
        if args.debug:
            raise
        _error(exc.message, exc.hint)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def run() -> None:
    """The console script: `main`, then exit without tearing the heap down object by object.

    After a capture the interpreter holds millions of objects (FX graphs, sympy caches);
    finalising them one by one takes longer than some conversions (1.3 s after MobileNetV2).
    Frozen objects are left to the OS; atexit handlers still run and open files are flushed.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


def _error(message: str, hint: str | None = None) -> None:
    from rich.markup import escape

    out = console()
    out.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    if hint:
        out.print(f"[dim]hint:[/dim] {escape(hint)}", soft_wrap=True)


def _warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each, like errors (the SDK's own, e.g. stand-in calibration data)."""
    from rich.markup import escape

    console().print(f"[yellow]warning:[/yellow] {escape(str(message))}", soft_wrap=True)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks")
    common.add_argument(
        "--json", dest="json_out", nargs="?", const="-", metavar="FILE",
        help="write the result as JSON to FILE, or to stdout when no FILE is given",
    )
    parser = argparse.ArgumentParser(
        prog="edge-sdk",
        description="Convert PyTorch image classifiers to edge formats and prove them: parity and latency.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", parents=[common], help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'mobilenet*'")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (the README's model table)")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("info", parents=[common], help="show a model's card")
    p.add_argument("model")
    p.set_defaults(handler=cmd_info)

    from .converters import TARGETS

    p = sub.add_parser("convert", parents=[common], help="convert a model and verify parity")
    p.add_argument("model", help="registered name, path/to/file.py:factory, or a saved torch.export program (.pt2)")
    p.add_argument("--target", required=True, choices=sorted(TARGETS), help="output format")
    p.add_argument("--out", type=Path, help="output folder or file (default: edge-sdk-out/)")
    p.add_argument("--weights", type=Path, help="state dict, checkpoint or pickled module to load")
    p.add_argument("--num-classes", type=int, help="classifier size (must match --weights)")
    p.add_argument("--input-shape", type=_shape, help="N,C,H,W for user models (default: the model card's)")
    p.add_argument("--opset", type=int, help="ONNX opset (18..23, default 18)")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: make the batch dimension dynamic")
    p.add_argument("--nhwc-input", action="store_true",
                   help="TFLite: take the input NHWC (no TRANSPOSE in the file); an image input then takes RGB pixels 0..255, "
                        "normalised inside the file, as MediaPipe / Android apps feed it")
    p.add_argument("--min-target", help="CoreML: oldest OS to run on, iOS15..iOS18 or macOS12..macOS15 (default: the oldest "
                   "that runs the precision)")
    p.add_argument("--image-input", action="store_true",
                   help="CoreML: an image input with the model card's scale and bias (and class labels when known)")
    p.add_argument("--io", choices=["float32", "int8", "uint8"],
                   help="TFLite --int8: dtype of the file's input and output (default float32)")
    p.add_argument("--labels", type=Path, metavar="FILE",
                   help="class names, one per line in output order, carried by the file (default: the model card's, "
                        "ImageNet's for 1000-class zoo models)")
    p.add_argument("--author", help="who publishes the file, in every format's metadata (default: edge-sdk)")
    p.add_argument("--license", help="the file's licence, e.g. that of the weights, in every format's metadata")
    p.add_argument("--model-version", metavar="VERSION", help="the file's version in its metadata (default: edge-sdk's and the precision)")
    p.add_argument("--backend", choices=["edge-sdk", "litert-torch"], default="edge-sdk",
                   help="TFLite: who writes the file, edge-sdk's own emitter (default) or Google's litert-torch "
                        "(optional: pip install litert-torch==0.10.0), a way through for ops the emitter lacks")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check")
    _precision_args(p)
    _sample_args(p)
    p.set_defaults(handler=cmd_convert)

    p = sub.add_parser("verify", parents=[common], help="check an artifact against its PyTorch model")
    p.add_argument("artifact", type=Path)
    p.add_argument("--model", required=True, help="registered name, path/to/file.py:factory or .pt2")
    p.add_argument("--weights", type=Path)
    p.add_argument("--num-classes", type=int)
    p.add_argument("--precision", choices=["fp32", "fp16", "int8-weights", "int8"], help="default: from the manifest")
    p.add_argument("--input-shape", type=_shape, help="N,C,H,W for user models (default: the artifact's manifest)")
    _sample_args(p)
    _device_args(p)
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("classify", parents=[common], help="classify photos with an artifact (any format), no code needed")
    p.add_argument("artifact", type=Path)
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help=".jpg / .png files")
    p.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--threads", type=int, help="CPU threads for the interpreter")
    p.set_defaults(handler=cmd_classify)

    p = sub.add_parser("bench", parents=[common], help="measure artifacts' latency here or on a device")
    p.add_argument("artifacts", type=Path, nargs="+", metavar="FILE")
    p.add_argument("--runs", type=int, help="timed runs (default 100; with --duration: a cap)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--duration", type=float, metavar="SECONDS", help="time budget instead of a run count")
    p.add_argument("--sustained", type=float, metavar="SECONDS", help="run this long and report the drift between time windows")
    p.add_argument("--cooldown", type=float, metavar="CELSIUS", help="first wait until the device is at or under this temperature")
    p.add_argument("--threads", type=int, help="CPU threads for the interpreter (default: the runtime's)")
    p.add_argument("--backend", help="force a backend: onnxruntime, tflite, torch")
    p.add_argument("--compare", action="store_true", help="one table for all files and a PNG plot (needs matplotlib)")
    p.add_argument("--plot", type=Path, default=Path("edge-sdk-out/bench-compare.png"), help="where --compare writes its plot")
    _device_args(p)
    p.add_argument("--benchmark-binary", type=Path, metavar="PATH", help="adb: TFLite's benchmark_model built for the phone")
    p.add_argument("--no-xnnpack", dest="use_xnnpack", action="store_false", help="adb: run benchmark_model without XNNPACK")
    p.set_defaults(handler=cmd_bench)

    p = sub.add_parser("matrix", parents=[common], help="convert, verify and time models x targets x precisions")
    p.add_argument("patterns", nargs="*", default=["*"], metavar="PATTERN", help="shell-style patterns (default: every model)")
    p.add_argument("--targets", nargs="+", metavar="TARGET", help=f"default: all ({', '.join(TARGETS)})")
    p.add_argument("--precisions", nargs="+", metavar="PRECISION",
                   help="default: all (fp32 fp16 int8-weights int8); each target runs those it offers")
    p.add_argument("--out", type=Path, default=Path("docs"), help="folder for COMPATIBILITY.md and compatibility.json")
    p.add_argument("--runs", type=int, default=10, help="timed runs per cell (1 thread, after 2 warm-up)")
    p.add_argument("--timeout-per-cell", type=float, metavar="SECONDS", help="abandon a cell after this long (recorded as a fail)")
    p.add_argument("--resume", action="store_true",
                   help="keep the cells of OUT/compatibility.json measured with the same versions and run only the "
                        "missing ones (stop any time with Ctrl-C; run again to continue)")
    p.add_argument("--rerun-failed", action="store_true", help="with --resume: run the earlier failing cells again")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="measure N models at once, in worker processes on one thread each (default 1; "
                        "--jobs 2 on 2 cores takes about half the time, latencies then share the host)")
    p.set_defaults(handler=cmd_matrix)
    return parser


def _precision_args(p: argparse.ArgumentParser) -> None:
    q = p.add_argument_group("precision and quantisation (one calibration, one QuantPlan for every target)")
    kind = q.add_mutually_exclusive_group()
    kind.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="float16 weights (half the size)")
    kind.add_argument("--int8", dest="precision", action="store_const", const="int8",
                      help="full int8: per-channel int8 weights, per-tensor int8 activations, calibrated")
    kind.add_argument("--int8-weights", dest="precision", action="store_const", const="int8-weights",
                      help="int8 weights, float activations (no calibration data needed)")
    q.add_argument("--calib", metavar="PATH", help="calibration images: a folder or .npy/.npz (default: bundled photos, with a warning)")
    q.add_argument("--calib-samples", type=int, metavar="N",
                   help="calibration samples to use (default 256; without --calib the bundled photos give 64, "
                        "or on random weights the 8 parity compares on)")
    q.add_argument("--observer", choices=["minmax", "percentile", "mse"], help="how activation ranges are chosen (default mse)")
    q.add_argument("--keep-float", nargs="+", action="extend", metavar="LAYER",
                   help="torch module paths (or graph nodes) to keep in float, e.g. features.0 classifier")
    q.add_argument("--max-accuracy-drop", type=float, metavar="POINTS",
                   help="auto mode: keep the fewest layers in float so the simulated top-1 drop stays within POINTS")
    q.add_argument("--plan", type=Path, metavar="FILE",
                   help="reuse a saved QuantPlan (*.quantplan.json from an earlier int8 run) instead of calibrating")
    p.set_defaults(precision="fp32")


def _quantisation_options(args) -> dict:
    """The convert() keywords of the quantisation flags; an error when they are given without int8."""
    given = [f for f, v in (("--calib", args.calib), ("--calib-samples", args.calib_samples), ("--observer", args.observer),
                            ("--keep-float", args.keep_float), ("--max-accuracy-drop", args.max_accuracy_drop),
                            ("--plan", args.plan)) if v is not None]
    if args.precision not in ("int8", "int8-weights"):
        if given:
            raise EdgeSDKError(f"{', '.join(given)} apply to --int8 or --int8-weights only", "add --int8")
        return {}
    if args.plan is not None:
        if len(given) > 1:
            raise EdgeSDKError("--plan already holds the calibration; drop " + ", ".join(g for g in given if g != "--plan"))
        return {"plan": args.plan}
    from .quantize import QuantRecipe

    fields = {"scheme": args.precision, "observer": args.observer, "calibration_samples": args.calib_samples,
              "keep_float": tuple(args.keep_float or ())}
    recipe = QuantRecipe(**{k: v for k, v in fields.items() if v is not None})
    return {"calibration": args.calib, "recipe": recipe, "max_accuracy_drop": args.max_accuracy_drop}


def _sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", help="folder of images or .npy/.npz (default: bundled real photos)")
    p.add_argument("--count", type=int, default=8, help="number of samples for parity (default 8)")
    p.add_argument("--threads", type=int, help="CPU threads for the interpreter")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write N,C,H,W e.g. 1,3,224,224") from None
    if not shape or any(d < 1 for d in shape):
        raise argparse.ArgumentTypeError(f"{text!r}: every dimension must be >= 1")
    return shape


def _emit(args, payload: dict, renderables=()) -> None:
    """Print tables for people, or JSON for scripts (stdout, or a file with the tables kept)."""
    if args.json_out == "-":
        print(json.dumps(payload, indent=2))
        return
    out = console()
    for r in renderables:
        out.print(r)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(payload, indent=2) + "\n")


def _needs_torch(purpose: str) -> None:
    """Commands that build models need torch; on a runtime-only install say how to get it."""
    from .errors import require

    require("torch", extra="onnx", purpose=purpose)


def cmd_list(args) -> int:
    from rich.table import Table

    _needs_torch("Listing the model zoo")
    from .models import get_model_card, list_models

    names = list_models(args.pattern)
    if not names:
        _error(f"no model matches {args.pattern!r}", "run `edge-sdk list` to see every model")
        return EXIT_ERROR
    cards = [get_model_card(n) for n in names]
    if args.markdown:
        print(models_markdown(cards))
        return EXIT_OK
    table = Table(title=f"{len(cards)} models")
    for col in ("name", "family", "params", "MACs", "input"):
        table.add_column(col, justify="right" if col in ("params", "MACs") else "left")
    for c in cards:
        table.add_row(c.name, c.family, f"{c.params / 1e6:.2f} M", f"{c.macs / 1e6:.0f} M", "x".join(map(str, c.input_size)))
    _emit(args, {"models": [c.to_dict() for c in cards]}, [table])
    return EXIT_OK


def models_markdown(cards) -> str:
    """The model table of the README: one row per model, measured params and MACs."""
    lines = ["| model | family | params | MACs | input | paper |", "|---|---|---:|---:|---|---|"]
    for c in cards:
        paper = f"[{c.paper.split(':')[0]}]({c.paper_url})" if c.paper_url else ""
        lines.append(f"| `{c.name}` | {c.family} | {c.params / 1e6:.2f} M | {c.macs / 1e6:,.0f} M | "
                     f"{'x'.join(map(str, c.input_size))} | {paper} |")
    return "\n".join(lines)


def cmd_info(args) -> int:
    from rich.table import Table

    _needs_torch("Showing a model card")
    from .models import get_model_card

    card = get_model_card(args.model)
    table = Table(title=card.name, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    d = card.to_dict()
    d["params"] = f"{card.params:,}"
    d["MACs"] = f"{card.macs:,}"
    d.pop("macs")
    d["preprocessing"] = json.dumps(card.preprocessing.to_dict())
    for key, value in d.items():
        table.add_row(key, str(value))
    _emit(args, card.to_dict() | {"preprocessing": card.preprocessing.to_dict()}, [table])
    return EXIT_OK


def cmd_convert(args) -> int:
    _needs_torch("Converting a model")
    from .api import convert, resolve_model
    from .verify import check_parity

    resolved = resolve_model(args.model, input_shape=args.input_shape, weights=args.weights, num_classes=args.num_classes)
    options = {}
    if args.target == "onnx":
        if args.opset is not None:
            options["opset"] = args.opset
        options["dynamic_batch"] = args.dynamic_batch
    elif args.opset is not None or args.dynamic_batch:
        raise EdgeSDKError("--opset and --dynamic-batch apply to --target onnx only")
    if args.target == "tflite":
        options["nhwc_input"] = args.nhwc_input
        if args.io is not None:
            options["io"] = args.io
    elif args.nhwc_input or args.io:
        raise EdgeSDKError("--nhwc-input and --io apply to --target tflite only")
    if args.target == "coreml":
        options["image_input"] = args.image_input
        if args.min_target is not None:
            options["min_target"] = args.min_target
    elif args.image_input or args.min_target:
        raise EdgeSDKError("--min-target and --image-input apply to --target coreml only")
    options.update(_quantisation_options(args))
    if args.backend != "edge-sdk":  # --backend: a third-party TFLite converter instead of our emitter
        if args.target != "tflite" or args.nhwc_input or args.io:
            raise EdgeSDKError(f"--backend {args.backend} applies to --target tflite, without --nhwc-input and --io",
                               "drop --backend, or the edge-sdk-only options")
        options["backend"] = args.backend
    artifact = convert(resolved, args.target, out=args.out, precision=args.precision, labels=args.labels,
                       author=args.author, license=args.license, model_version=args.model_version, **options)
    payload = {"artifact": artifact.to_dict()}
    renderables = []
    exit_code = EXIT_OK
    report = None
    if not args.no_verify:
        report = check_parity(resolved.reference, artifact, args.samples, count=args.count, threads=args.threads, card=resolved.card)
        payload["parity"] = report.to_dict()
        renderables.append(report.table())
        exit_code = EXIT_OK if report.passed else EXIT_CHECK_FAILED
    if artifact.simulation is not None:
        renderables += _quantisation_summary(artifact, report)
    renderables.append(
        f"[bold]{artifact.path}[/bold]  {artifact.size_bytes / 1e6:.2f} MB, {artifact.target} {artifact.precision}, "
        f"converted in {artifact.seconds:.1f} s (manifest: {artifact.manifest_path.name})"
    )
    if artifact.options.get("labels_note"):
        renderables.append(f"[dim]note:[/dim] no class names in the file: {artifact.options['labels_note']}")
    if exit_code == EXIT_OK:
        renderables.append(f"next: [cyan]edge-sdk bench {artifact.path}[/cyan]")
    else:
        renderables.append("[red]parity FAILED[/red]: the file was written but does not match PyTorch within the thresholds")
    _emit(args, payload, renderables)
    return exit_code


def _quantisation_summary(artifact, report) -> list:
    """The end-of-run int8 summary: the plan's decisions, then predicted vs measured agreement."""
    from .quantize import summarize

    lines = [summarize(artifact.simulation).table()]
    sim = report.simulation if report is not None else None
    if sim is not None:
        lines.append(
            f"top-1 agreement with float on {report.samples} samples: predicted {sim.predicted_top1_agreement:.0%} "
            f"(simulation), measured {sim.measured_top1_agreement:.0%} ({artifact.target}); "
            f"cosine {artifact.target} vs simulation {sim.artifact_vs_simulation_cosine:.5f}"
        )
    lines.append(f"plan: {artifact.quantization['plan']} (reuse it with --plan for another target)")
    return lines


def _manifest_input_shape(artifact: Path) -> tuple[int, ...] | None:
    """(1, C, H, W) of the model an artifact was converted from, per its manifest: a user model's
    factory does not say its input size, and parity must preprocess the photos to it."""
    from .runtime.manifest import read_manifest

    size = ((read_manifest(artifact) or {}).get("model") or {}).get("input_size")
    return (1, *size) if size else None


def cmd_verify(args) -> int:
    _needs_torch("Running the PyTorch reference for parity")
    from .api import resolve_model, saved_simulation

    shape = args.input_shape or _manifest_input_shape(args.artifact)
    resolved = resolve_model(args.model, input_shape=shape, weights=args.weights, num_classes=args.num_classes)
    runner = _runner(args)
    report = runner.verify(args.artifact, resolved.reference, args.samples, precision=args.precision,
                           count=args.count, threads=args.threads, card=resolved.card,
                           simulation=saved_simulation(args.artifact, resolved))
    _emit(args, report.to_dict(), [report.table()])  # the table's caption carries the notes
    return EXIT_OK if report.passed else EXIT_CHECK_FAILED


def cmd_classify(args) -> int:
    from rich.table import Table

    from .runtime import load

    session = load(args.artifact, threads=args.threads)
    results = session.classify([str(p) for p in args.images], top_k=args.top_k)
    info = session.info
    table = Table(title=f"{args.artifact.name}: {info.name} ({info.precision or 'fp32'}) on {session.backend}")
    table.add_column("image")
    for rank in range(1, min(args.top_k, len(results[0])) + 1):
        table.add_column(f"#{rank}")
    for image, predictions in zip(args.images, results):
        table.add_row(image.name, *(str(p) for p in predictions))
    payload = {"artifact": str(args.artifact), "backend": session.backend, "info": info.to_dict(),
               "results": [{"image": str(image), "predictions": [vars(p) for p in predictions]}
                           for image, predictions in zip(args.images, results)]}
    notes = [f"[dim]note:[/dim] no class names in the file: {info.labels_note}"] if info.labels is None and info.labels_note else []
    _emit(args, payload, [table, *notes])
    return EXIT_OK


def cmd_bench(args) -> int:
    from .verify.bench import compare_table, plot_comparison

    if args.compare:
        from .errors import require

        require("matplotlib", extra="plot", purpose="The --compare plot")
    options = {"runs": args.runs, "warmup": args.warmup, "threads": args.threads, "backend": args.backend,
               "duration_s": args.duration, "sustained_s": args.sustained, "cooldown_c": args.cooldown}
    reports = _runner(args).bench(args.artifacts, **{k: v for k, v in options.items() if v is not None})
    renderables = []
    if args.compare:
        renderables.append(compare_table(reports))
        for r in reports:
            renderables += [f"{r.artifact}: {line}" for line in r.summary_lines()]
        plot = plot_comparison(reports, args.plot)
        renderables.append(f"plot: [bold]{plot}[/bold]")
    else:
        for r in reports:
            renderables += [r.table(), *r.summary_lines()]
    if len(reports) == 1 and not args.compare:
        payload = reports[0].to_dict()
    else:
        payload = {"reports": [r.to_dict() for r in reports], "plot": str(args.plot) if args.compare else None}
    _emit(args, payload, renderables)
    return EXIT_OK


def cmd_matrix(args) -> int:
    """Exit 0 whenever the matrix ran, failing cells included: the failures are its result, not an error."""
    import signal

    from rich.markup import escape
    from rich.table import Table

    _needs_torch("Building the compatibility matrix")
    from .matrix import ZOO_CALIBRATION, check_selection, run_matrix

    check_selection(args.targets, args.precisions)  # bad names fail before the models are listed
    set_progress(False)  # one line per cell instead of every step's spinner
    out = console()
    colour = {"pass": "green", "fail": "red", "skip": "yellow"}

    def line(cell, index, total):
        numbers = [f"cos {cell.min_cosine:.5f}" if cell.min_cosine is not None else "",
                   f"p50 {cell.latency_p50_ms:.2f} ms" if cell.latency_p50_ms is not None else ""]
        out.print(f"[{index:>{len(str(total))}}/{total}] {cell.model} {cell.target} {cell.precision}: "
                  f"[{colour[cell.status]}]{cell.status}[/{colour[cell.status]}] {' '.join(n for n in numbers if n)} "
                  f"[dim]({cell.seconds:.1f} s)[/dim] {escape(cell.reason or '')}", soft_wrap=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    resume = _earlier_matrix(args.out / "compatibility.json") if args.resume else None
    previous = signal.signal(signal.SIGTERM, stop)  # like Ctrl-C: a background run stops and still writes what ran
    try:
        report = run_matrix(args.patterns, targets=args.targets, precisions=args.precisions, runs=args.runs,
                            timeout_per_cell=args.timeout_per_cell, on_cell=line, resume=resume,
                            rerun_failed=args.rerun_failed, jobs=args.jobs)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if resume is not None:
        out.print(f"kept {report.kept_cells} cells of {args.out / 'compatibility.json'}" if report.kept_cells else
                  f"[yellow]kept no cell of {args.out / 'compatibility.json'}[/yellow]: it was measured with other "
                  "versions, another CPU, or other --runs; every cell ran again")
        earlier = resume.get("versions", {})
        changed = [f"{k} {earlier.get(k)} -> {v}" for k, v in report.versions.items() if earlier.get(k) != v]
        if changed:
            out.print(f"versions changed since that run ({', '.join(changed)}): the cells that depend on them ran again")
        if resume.get("calibration") != ZOO_CALIBRATION:
            out.print(f"int8 calibration changed since that run (now {ZOO_CALIBRATION}): the int8 cells ran again")
    md, js = report.write(args.out)
    table = Table(title=f"Compatibility: {len(report.models)} models in {report.seconds / 60:.1f} min")
    table.add_column("target / precision")
    for status in ("pass", "fail", "skip"):
        table.add_column(status, justify="right")
    for target, precision in report.columns():
        cells = [c for c in report.cells if (c.target, c.precision) == (target, precision)]
        table.add_row(f"{target} {precision}", *(str(sum(c.status == s for c in cells)) for s in ("pass", "fail", "skip")))
    stopped = ([f"[yellow]stopped[/yellow]: {len(report.cells)} of {report.planned_cells} cells measured"] if report.stopped else
               [f"{report.planned_cells - len(report.cells)} cells of the earlier run's selection are still missing: "
                "run its command with --resume"] if report.interrupted else [])
    _emit(args, report.to_dict(), [table, *stopped, f"wrote [bold]{md}[/bold] and [bold]{js}[/bold]"])
    return 130 if report.stopped else EXIT_OK


def _earlier_matrix(path: Path) -> dict | None:
    """The report --resume continues: None (a fresh start) when there is none yet."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the matrix to resume, {path}: {exc}", "delete it, or drop --resume") from None


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="local", metavar="TARGET",
                   help="local (default), ssh://[user@]host[:port] or adb://SERIAL; options ?python=PATH&tmp=DIR")
    p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS", help="limit for each command on the device")
    p.add_argument("--ssh-config", type=Path, metavar="FILE", help="ssh: use this config file (ssh -F) instead of ~/.ssh/config")


def _runner(args):
    from .devices import connect

    return connect(args.device, timeout_s=args.timeout, ssh_config=args.ssh_config,
                   benchmark_binary=getattr(args, "benchmark_binary", None), use_xnnpack=getattr(args, "use_xnnpack", True))


if __name__ == "__main__":
    run()
