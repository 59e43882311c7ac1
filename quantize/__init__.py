"""Post-training quantisation (installed as edge_sdk.quantize): calibration -> QuantPlan -> QuantizedModel.

    qmodel = edge_sdk.quantize.quantize(model, "calib_images/", QuantRecipe(observer="mse"))
    qmodel.plan.save("plan.json")        # the decisions every target emits from
    qmodel(x)                            # int8 numerics simulated in PyTorch

Names are imported on first use, so importing the package needs no torch (a device
install imports every subpackage without it).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "quantize": "api",
    "CalibrationWarning": "calibration",
    "calibration_samples": "calibration",
    "ActQuant": "plan",
    "PlanError": "plan",
    "QuantPlan": "plan",
    "WeightQuant": "plan",
    "QuantRecipe": "recipe",
    "RecipeError": "recipe",
    "SensitivityReport": "sensitivity",
    "layer_sensitivity": "sensitivity",
    "top1_drop": "sensitivity",
    "QuantizedModel": "simulate",
    "QuantSummary": "summary",
    "summarize": "summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
