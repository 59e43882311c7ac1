"""The `edge-sdk` command: a thin layer over the Python API.

Exit codes: 0 success, 1 a check failed (parity), 2 bad input or a failed step
(one message, no traceback unless --debug), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import EdgeSDKError
from .progress import console, set_progress

EXIT_OK, EXIT_CHECK_FAILED, EXIT_ERROR = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_ERROR
    set_progress(False if args.json_out is not None else True)
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


def _error(message: str, hint: str | None = None) -> None:
    from rich.markup import escape

    out = console()
    out.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    if hint:
        out.print(f"[dim]hint:[/dim] {escape(hint)}", soft_wrap=True)


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
    p.add_argument("--fp16", action="store_true", help="TFLite: store weights as float16 (half the file size)")
    p.add_argument("--nhwc-input", action="store_true", help="TFLite: take the input NHWC (no TRANSPOSE in the file)")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check")
    _sample_args(p)
    p.set_defaults(handler=cmd_convert)

    p = sub.add_parser("verify", parents=[common], help="check an artifact against its PyTorch model")
    p.add_argument("artifact", type=Path)
    p.add_argument("--model", required=True, help="registered name, path/to/file.py:factory or .pt2")
    p.add_argument("--weights", type=Path)
    p.add_argument("--num-classes", type=int)
    p.add_argument("--precision", choices=["fp32", "fp16", "int8-weights", "int8"], help="default: from the manifest")
    _sample_args(p)
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("bench", parents=[common], help="measure an artifact's latency on this machine")
    p.add_argument("artifact", type=Path)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, help="CPU threads for the interpreter (default: the runtime's)")
    p.add_argument("--backend", help="force a backend: onnxruntime, tflite, torch")
    p.set_defaults(handler=cmd_bench)
    return parser


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
    elif args.fp16 or args.nhwc_input:
        raise EdgeSDKError("--fp16 and --nhwc-input apply to --target tflite only")
    precision = "fp16" if args.fp16 else "fp32"
    artifact = convert(resolved, args.target, out=args.out, precision=precision, **options)
    payload = {"artifact": artifact.to_dict()}
    renderables = []
    exit_code = EXIT_OK
    if not args.no_verify:
        report = check_parity(resolved.reference, artifact, args.samples, count=args.count, threads=args.threads, card=resolved.card)
        payload["parity"] = report.to_dict()
        renderables.append(report.table())
        exit_code = EXIT_OK if report.passed else EXIT_CHECK_FAILED
    renderables.append(
        f"[bold]{artifact.path}[/bold]  {artifact.size_bytes / 1e6:.2f} MB, {artifact.target} {artifact.precision}, "
        f"converted in {artifact.seconds:.1f} s (manifest: {artifact.manifest_path.name})"
    )
    if exit_code == EXIT_OK:
        renderables.append(f"next: [cyan]edge-sdk bench {artifact.path}[/cyan]")
    else:
        renderables.append("[red]parity FAILED[/red]: the file was written but does not match PyTorch within the thresholds")
    _emit(args, payload, renderables)
    return exit_code


def cmd_verify(args) -> int:
    _needs_torch("Running the PyTorch reference for parity")
    from .api import resolve_model
    from .verify import check_parity

    resolved = resolve_model(args.model, weights=args.weights, num_classes=args.num_classes)
    report = check_parity(resolved.reference, args.artifact, args.samples, precision=args.precision,
                          count=args.count, threads=args.threads, card=resolved.card)
    _emit(args, report.to_dict(), [report.table()])
    return EXIT_OK if report.passed else EXIT_CHECK_FAILED


def cmd_bench(args) -> int:
    from .verify import benchmark

    report = benchmark(args.artifact, runs=args.runs, warmup=args.warmup, threads=args.threads, backend=args.backend)
    _emit(args, report.to_dict(), [report.table()])
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
