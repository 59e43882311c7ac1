"""quantize(): model + calibration data + recipe -> QuantizedModel (graph + QuantPlan).

The one entry point the converters and the CLI use; every step below is a plain call
so a user can also run them one by one.
"""

from __future__ import annotations

import torch

from ..errors import EdgeSDKError
from ..graph import CapturedGraph, capture
from .batched import batch_size_for
from .calibration import calibration_samples, describe_calibration, preprocessing_for
from .observers import collect_stats
from .plan import build_plan
from .recipe import QuantRecipe
from .rules import analyse
from .sensitivity import fewest_float_layers, layer_sensitivity
from .simulate import QuantizedModel


def quantize(model, calibration=None, recipe: QuantRecipe | None = None, *, example_input=None,
             max_accuracy_drop: float | None = None, labels=None, sensitivity_samples: int = 0) -> QuantizedModel:
    """Calibrate `model` (an nn.Module or a CapturedGraph) and plan its quantisation.

    calibration: a folder of images, a .npy/.npz file, an array/tensor, an iterable of
    tensors, or None for the bundled photos (with a warning; on a random-weight zoo model,
    the ones parity compares on).
    max_accuracy_drop: `auto` mode, in percentage points: keep the fewest layers in
    float so that the simulated top-1 drop on the calibration samples (accuracy with
    `labels`, else agreement with float) stays within it.
    sensitivity_samples: when > 0, measure per-layer sensitivity on that many calibration
    samples (one simulated run per weighted layer) into `qmodel.sensitivity`.
    """
    recipe = recipe or QuantRecipe()
    graph = model if isinstance(model, CapturedGraph) else capture(model, _example(model, example_input))
    watched = _watched(graph, recipe)  # none for int8-weights / fp16: no pass over the data
    sets_ranges = bool(watched) or max_accuracy_drop is not None
    samples = calibration_samples(calibration, preprocessing_for(graph), recipe.calibration_samples, ranges=sets_ranges,
                                  random_weights=graph.random_weights)
    rules = analyse(graph, recipe.keep_float, quantize_activations=recipe.scheme == "int8")
    stats = collect_stats(graph.module, watched, samples, histogram=recipe.observer != "minmax",
                          batch_size=batch_size_for(graph)) if watched else {}
    if max_accuracy_drop is not None:
        recipe = fewest_float_layers(graph, stats, recipe, samples, max_accuracy_drop, labels)
        rules = analyse(graph, recipe.keep_float, quantize_activations=recipe.scheme == "int8")
    qmodel = QuantizedModel(graph, build_plan(graph.module, rules, stats, recipe))
    qmodel.calibration = (describe_calibration(calibration, len(samples), random_weights=graph.random_weights)
                          if sets_ranges else "none needed (weights only)")
    if sensitivity_samples > 0 and qmodel.plan.weights:
        qmodel.sensitivity = layer_sensitivity(graph, qmodel.plan, samples[:sensitivity_samples])
    return qmodel


def _watched(graph: CapturedGraph, recipe: QuantRecipe) -> list[str]:
    """Every tensor that could carry qparams: keep_float only ever removes points."""
    return analyse(graph, (), quantize_activations=recipe.scheme == "int8").points


def _example(model, example_input):
    if example_input is not None:
        return example_input
    card = getattr(model, "card", None)
    if card is None:
        raise EdgeSDKError(f"cannot tell the input shape of {type(model).__name__}",
                           "pass example_input=torch.randn(1, C, H, W), or a CapturedGraph")
    return torch.randn(1, *card.input_size)
