"""The device side: what `python3 edge-sdk-agent.pyz COMMAND REQUEST RESULT` runs on a board.

The host pushes this module inside a zip of edge-sdk's torch-free code (see
bundle.py) and calls it with a JSON request; the answer goes to the RESULT file,
which the host pulls. Commands:

    describe                      the device (board, CPU, OS, Python, runtimes) and its thermal state
    bench    {files, options}     edge_sdk.verify.benchmark on each file -> BenchReport dicts
    inspect  {file, threads}      the Session's input / output specs and runtime version
    run      {file, threads, inputs, outputs, raw}   Session.run (or run_raw) on inputs.npy -> outputs.npz

A failure writes {"error": {type, message, hint}} and exits 3, so the host can show
the device's own message. `timeout_s` in the request arms SIGALRM, whose default
action kills the process even inside a native call that hangs: nothing keeps
running on the device after the host has given up.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path


def _describe(request: dict) -> dict:
    import edge_sdk
    from edge_sdk.verify.host import describe_host, device_state

    return {"device": describe_host(), "state": device_state(), "agent": str(Path(edge_sdk.__file__).parent)}


def _bench(request: dict) -> dict:
    from edge_sdk.verify.bench import benchmark

    reports = []
    for name in request["files"]:
        reports.append(benchmark(Path(name), **request.get("options", {})).to_dict())
    return {"reports": reports}


def _inspect(request: dict) -> dict:
    from edge_sdk.runtime import load

    return load(request["file"], threads=request.get("threads")).describe()


def _run(request: dict) -> dict:
    import numpy as np

    from edge_sdk.runtime import load

    session = load(request["file"], threads=request.get("threads"))
    with np.load(request["inputs"]) as data:
        arrays = [data[k] for k in sorted(data.files, key=int)]
    outputs = session.run_raw(arrays) if request.get("raw") else session.run(arrays)
    np.savez(request["outputs"], **{str(i): y for i, y in enumerate(outputs)})
    return {"outputs": len(outputs)}


COMMANDS = {"describe": _describe, "bench": _bench, "inspect": _inspect, "run": _run}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in COMMANDS:
        print(f"usage: agent {{{','.join(COMMANDS)}}} REQUEST_JSON RESULT_PATH", file=sys.stderr)
        return 2
    command, request, result_path = argv[0], json.loads(argv[1]), Path(argv[2])
    if request.get("timeout_s"):
        signal.alarm(int(request["timeout_s"]))
    try:
        answer = COMMANDS[command](request)
        code = 0
    except Exception as exc:  # reported to the host, which raises it as a DeviceError
        answer = {"error": {"type": type(exc).__name__, "message": getattr(exc, "message", str(exc)),
                            "hint": getattr(exc, "hint", None), "traceback": traceback.format_exc()}}
        code = 3
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(answer))
    tmp.replace(result_path)
    return code


if __name__ == "__main__":
    sys.exit(main())
