"""An app's view: classify image files with a .tflite, an .onnx and an .mlpackage, with no preprocessing code.

    python examples/classify_photos.py [OUT_DIR]

The digits model of digits_int8.py (MobileNetV2-0.35 trained on scikit-learn's handwritten
digits, or its copy in OUT_DIR when that example ran first) gets a model card saying how its
images are normalised and what its classes are called. Each format carries that card inside
the file, so `session.classify("digit.png")` resizes, normalises and names the classes by
itself, the same on every format: the TFLite file takes uint8 pixels as MediaPipe feeds them,
the CoreML file is a Vision classifier with an image input.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from digits_int8 import digits, trained
from PIL import Image

import edge_sdk
from edge_sdk import runtime

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main(out: Path) -> None:
    torch.set_num_threads(1)
    x_train, x_test, y_train, y_test = digits()
    model = trained(out, x_train, y_train)  # trains once (about a minute), then reuses OUT_DIR's copy
    # What the files must know to take a raw image: digits() scales pixels to [-1, 1] at 32x32, no crop.
    model.card = model.card.with_(name="digits_mobilenet_v2_035", mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0,
                                  labels=tuple(NAMES), license="BSD-3-Clause (scikit-learn digits)")

    graph = edge_sdk.capture(model, torch.from_numpy(x_train[:1]), card=model.card)  # one capture for the three files
    tflite = edge_sdk.convert(graph, "tflite", precision="int8", calibration=x_train[:256], out=out,
                              nhwc_input=True, io="uint8")
    plan = out / tflite.quantization["plan"]
    files = [tflite, edge_sdk.convert(graph, "onnx", precision="int8", plan=plan, out=out),
             edge_sdk.convert(graph, "coreml", precision="int8", plan=plan, out=out, image_input=True)]

    photos = out / "digits"  # the held-out digits as the PNG files an app would receive
    photos.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(x_test[:50]):
        path = photos / f"{i:02d}.png"
        Image.fromarray(np.round((image[0] * 0.5 + 0.5) * 255).clip(0, 255).astype(np.uint8)).save(path)
        paths.append(str(path))

    answers = {}
    for artifact in files:
        session = runtime.load(artifact.path)
        predictions = session.classify(paths, top_k=1)
        answers[artifact.target] = [p[0].label for p in predictions]
        correct = np.mean([label == NAMES[y] for label, y in zip(answers[artifact.target], y_test)])
        print(f"{artifact.path.name:34s} {session.backend:17s} {100 * correct:5.1f} % correct on {len(paths)} PNG files;"
              f" {Path(paths[0]).name}: {predictions[0][0]}")
        assert correct >= 0.9, f"{artifact.target}: only {correct:.0%} of the digits named right"
    agree = np.mean([len(set(labels)) == 1 for labels in zip(*answers.values())])
    print(f"the three formats name the same class for {100 * agree:.0f} % of the files")
    assert agree >= 0.96


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "edge-sdk-out"))
