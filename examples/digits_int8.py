"""Train, quantise once, deploy three formats: int8 accuracy measured on real labels, per format.

    python examples/digits_int8.py [OUT_DIR]

A MobileNetV2-0.35 learns scikit-learn's handwritten digits (1,797 labelled 8x8 images,
upsampled to 32x32) in under a minute on 2 cores. One calibration on training images
gives one QuantPlan; TFLite, ONNX and CoreML are all emitted from it, and each file's
accuracy on the held-out images is compared with the float model's.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from edge_sdk.quantize import QuantRecipe
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import edge_sdk
from edge_sdk import runtime


def digits(size: int = 32):
    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return train_test_split(((x - 0.5) / 0.5).numpy(), data.target, test_size=0.2, random_state=0, stratify=data.target)


def train(x, y, epochs: int = 8) -> torch.nn.Module:
    torch.manual_seed(0)
    model = edge_sdk.create_model("mobilenet_v2_035", num_classes=10, img_size=x.shape[-1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    steps = epochs * ((len(x) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), 32):
            idx = order[i : i + 32]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def trained(out: Path, x_train, y_train) -> torch.nn.Module:
    """train(), kept in OUT_DIR as a state dict: a second run (or classify_photos.py) loads it instead."""
    path = out / "digits_mobilenet_v2_035.pt"
    if path.is_file():
        return edge_sdk.create_model("mobilenet_v2_035", num_classes=10, img_size=x_train.shape[-1], weights=path)
    model = train(x_train, y_train)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def main(out: Path) -> None:
    torch.set_num_threads(1)  # small batches on a shared machine: one thread is fastest
    x_train, x_test, y_train, y_test = digits()
    model = trained(out, x_train, y_train)
    with torch.no_grad():
        float_pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
    float_acc = 100 * float(np.mean(float_pred == y_test))

    # One capture, and one calibration on 256 training images -> one QuantPlan, written beside the first file.
    graph = edge_sdk.capture(model, torch.from_numpy(x_train[:1]), card=model.card)
    tflite = edge_sdk.convert(graph, "tflite", precision="int8", calibration=x_train[:256],
                              recipe=QuantRecipe(scheme="int8", calibration_samples=256), out=out)
    plan = out / tflite.quantization["plan"]
    files = [tflite] + [edge_sdk.convert(graph, target, precision="int8", plan=plan, out=out) for target in ("onnx", "coreml")]

    print(f"{'format':10s} {'accuracy %':>10s} {'same as float %':>15s} {'size KB':>8s}")
    print(f"{'float':10s} {float_acc:10.2f}")
    for artifact in files:
        pred = runtime.load(artifact.path).run(x_test)[0].argmax(1)
        acc, agree = 100 * float(np.mean(pred == y_test)), 100 * float(np.mean(pred == float_pred))
        print(f"{artifact.target:10s} {acc:10.2f} {agree:15.2f} {artifact.size_bytes / 1024:8.0f}")
        assert acc >= float_acc - 0.5, f"{artifact.target} int8 lost {float_acc - acc:.2f} points (more than 0.5)"
        assert agree >= 98.5, f"{artifact.target} int8 answers differently from float on {100 - agree:.1f} % of the digits"
    print(f"one plan for all three: {plan}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "edge-sdk-out"))
