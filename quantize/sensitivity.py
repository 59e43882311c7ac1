"""Which layers int8 hurts: per-layer output error, worst first, and the `auto` keep-float search.

A layer's sensitivity is the model-output SQNR when only that layer (its weights, its
input and its output tensor) is quantised and everything else stays float: it
isolates the layer, and it is reported under the torch module name users know.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..graph import CapturedGraph
from .plan import QuantPlan, build_plan
from .recipe import QuantRecipe
from .rules import analyse
from .simulate import Simulation, batch_size_for, run_batched, simulated_module


@dataclass(frozen=True)
class LayerSensitivity:
    node: str
    module: str
    sqnr_db: float  # model output vs float, only this layer quantised
    agreement: float  # top-1 agreement with float, percent


@dataclass
class SensitivityReport:
    layers: list[LayerSensitivity]  # worst (lowest SQNR) first

    def worst(self, n: int = 5) -> list[LayerSensitivity]:
        return self.layers[:n]

    def table(self, n: int = 5) -> str:
        rows = [f"{'layer':40s} {'SQNR dB':>8s} {'agree %':>8s}"]
        rows += [f"{(s.module or s.node):40s} {s.sqnr_db:8.1f} {s.agreement:8.1f}" for s in self.worst(n)]
        return "\n".join(rows)


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    noise = float(np.sum((reference.astype(np.float64) - approx) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)


def layer_sensitivity(graph: CapturedGraph, plan: QuantPlan, samples: np.ndarray) -> SensitivityReport:
    """Quantise one weighted layer at a time and measure the model output against float."""
    reference = run_batched(graph.module, samples, batch_size_for(graph))
    simulation = Simulation(graph.module, plan)
    layers = []
    for name, w in plan.weights.items():
        acts = {w.input, plan.fused.get(name, name)}
        out = run_batched(simulation.enable(weights={name}, activations=acts), samples, batch_size_for(graph))
        agreement = 100.0 * float(np.mean(out.argmax(1) == reference.argmax(1)))
        layers.append(LayerSensitivity(name, plan.module_of(name), sqnr_db(reference, out), agreement))
    layers.sort(key=lambda s: (s.sqnr_db, s.node))
    return SensitivityReport(layers)


def top1_drop(graph: CapturedGraph, plan: QuantPlan, samples: np.ndarray, labels=None, reference=None) -> float:
    """Percentage points lost by the plan: accuracy drop with labels, else disagreement with float."""
    reference = run_batched(graph.module, samples, batch_size_for(graph)) if reference is None else reference
    out = run_batched(simulated_module(graph.module, plan), samples, batch_size_for(graph))
    if labels is None:
        return 100.0 * float(np.mean(out.argmax(1) != reference.argmax(1)))
    labels = np.asarray(labels)
    return 100.0 * (float(np.mean(reference.argmax(1) == labels)) - float(np.mean(out.argmax(1) == labels)))


def fewest_float_layers(graph: CapturedGraph, stats, recipe: QuantRecipe, samples: np.ndarray,
                        budget: float, labels=None) -> QuantRecipe:
    """Greedy `auto` mode: add the most sensitive layers to keep_float until the drop fits `budget`."""
    def plan_for(r: QuantRecipe) -> QuantPlan:
        return build_plan(graph.module, analyse(graph, r.keep_float, r.scheme == "int8"), stats, r)

    reference = run_batched(graph.module, samples, batch_size_for(graph))
    plan = plan_for(recipe)
    if top1_drop(graph, plan, samples, labels, reference) <= budget:
        return recipe
    keep = list(recipe.keep_float)
    for layer in layer_sensitivity(graph, plan, samples).layers:
        keep.append(layer.module or layer.node)
        recipe = replace(recipe, keep_float=tuple(keep))
        if top1_drop(graph, plan_for(recipe), samples, labels, reference) <= budget:
            break
    return recipe
