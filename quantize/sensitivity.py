"""Which layers int8 hurts: per-layer output error, worst first, and the `auto` keep-float search.

A layer's sensitivity is the model-output SQNR when only that layer (its weights, its
input and its output tensor) is quantised and everything else stays float: it
isolates the layer, and it is reported under the torch module name users know.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import fx

from ..graph import CapturedGraph
from .batched import batch_size_for, fast_input, run_batched
from .plan import QuantPlan, build_plan
from .recipe import QuantRecipe
from .rules import analyse
from .simulate import Simulation, simulated_module


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
    """Quantise one weighted layer at a time and measure the model output against float.

    Each run recomputes only what lies downstream of the layer: every float tensor of
    the graph is recorded once per chunk of samples and reused upstream of the change
    (MobileNetV2: about half the work of whole-graph runs).
    """
    simulation = Simulation(graph.module, plan)
    module = simulation.enable(weights=set(), activations=set())  # float: the recording run
    chunk = _chunk_size(graph, len(samples))
    layers = {name: (w, {w.input, plan.fused.get(name, name)}) for name, w in plan.weights.items()}
    reference, outputs = [], {name: [] for name in layers}
    for i in range(0, len(samples), chunk):
        x = fast_input(module, torch.from_numpy(np.ascontiguousarray(samples[i : i + chunk])))
        recorded = _Recording(module)
        reference.append(recorded.output(x))
        for name, (w, acts) in layers.items():
            simulation.enable(weights={name}, activations=acts)
            outputs[name].append(recorded.output(x, changed={w.weight, w.bias, *(f"fq_{a}" for a in acts)}))
    simulation.enable(weights=set(), activations=set())
    reference = np.concatenate(reference)
    report = []
    for name, parts in outputs.items():
        out = np.concatenate(parts)
        agreement = 100.0 * float(np.mean(out.argmax(1) == reference.argmax(1)))
        report.append(LayerSensitivity(name, plan.module_of(name), sqnr_db(reference, out), agreement))
    report.sort(key=lambda s: (s.sqnr_db, s.node))
    return SensitivityReport(report)


RECORDING_BYTES = 1 << 29  # float tensors of one chunk of samples kept for the downstream-only runs


def _chunk_size(graph: CapturedGraph, count: int) -> int:
    """Samples per recording: as many as RECORDING_BYTES holds, in the batch the graph can run."""
    per_sample = sum(n.meta["val"].numel() * 4 for n in graph.module.graph.nodes
                     if isinstance(n.meta.get("val"), torch.Tensor)) / graph.example_inputs[0].shape[0]
    return batch_size_for(graph, preferred=int(max(1, min(count, RECORDING_BYTES // max(per_sample, 1)))))


class _Recording:
    """Every node's float value for one input, so a rerun computes only what a change reaches."""

    def __init__(self, module: fx.GraphModule):
        self.module = module
        self.env: dict[fx.Node, object] = {}

    def output(self, x: torch.Tensor, changed=()) -> np.ndarray:
        """The first output; `changed` names get_attr targets and fq_ modules whose values differ from the recording."""
        with torch.no_grad():
            if not self.env:
                interpreter = fx.Interpreter(self.module, garbage_collect_values=False)
                out = interpreter.run(x)
                self.env = dict(interpreter.env)
            else:
                stale = _downstream(self.module.graph, changed)
                kept = {n: v for n, v in self.env.items() if n not in stale}
                out = fx.Interpreter(self.module).run(x, initial_env=kept)
        return (out[0] if isinstance(out, (tuple, list)) else out).numpy()


def _downstream(graph: fx.Graph, changed) -> set[fx.Node]:
    """The nodes reading a changed target, and everything computed from them."""
    stale = {n for n in graph.nodes if n.op in ("get_attr", "call_module") and n.target in changed}
    for node in graph.nodes:  # topological order: a node's inputs come before it
        if node not in stale and any(a in stale for a in node.all_input_nodes):
            stale.add(node)
    return stale


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
