"""Convert a zoo model to ONNX, prove parity on real photos, benchmark it, and run it.

    python examples/quickstart.py [OUT_DIR]
"""

import sys

import numpy as np
from rich.console import Console

import edge_sdk
from edge_sdk.data import photo_batch


def main(out_dir: str = "edge-sdk-out") -> None:
    console = Console()
    artifact = edge_sdk.convert("mobilenet_v2", target="onnx", out=out_dir)
    parity = edge_sdk.check_parity("mobilenet_v2", artifact)
    console.print(parity.table())
    bench = edge_sdk.benchmark(artifact, runs=30, threads=1)
    console.print(bench.table())

    # The runtime API a deployment uses: float32 NCHW in, float32 out.
    session = edge_sdk.runtime.load(artifact.path, threads=1)
    photos = photo_batch(edge_sdk.get_model_card("mobilenet_v2").preprocessing, count=2)
    (logits,) = session.run(photos)
    console.print(f"top-1 classes of two photos: {np.argmax(logits, axis=1).tolist()}")
    if not parity.passed:
        sys.exit(1)


if __name__ == "__main__":
    main(*sys.argv[1:])
