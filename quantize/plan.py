"""QuantPlan: the int8 decisions for one graph, made once and read by every emitter.

Keyed by FX node names (which ONNX keeps as value names and which map back to torch
module paths), serialised as canonical JSON so the same inputs give the same bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import EdgeSDKError
from .observers import TensorStats, affine_qparams, weight_scales
from .recipe import QuantRecipe, RecipeError
from .rules import GraphRules

FORMAT = "edge-sdk.quantplan"
VERSION = 1


class PlanError(EdgeSDKError):
    """A QuantPlan file that cannot be read or is not a valid plan."""


@dataclass(frozen=True)
class ActQuant:
    """Per-tensor asymmetric int8 qparams and the rule that chose them."""

    scale: float
    zero_point: int
    rule: str  # "observed:<observer>", "shared:<root tensor>", "fixed:<op>"


@dataclass(frozen=True)
class WeightQuant:
    """Symmetric int8 weight scales per output channel; int32 bias at input_scale * weight_scale."""

    weight: str
    bias: str | None
    input: str
    axis: int
    scales: tuple[float, ...]
    bias_scales: tuple[float, ...] | None


@dataclass
class QuantPlan:
    recipe: QuantRecipe
    activations: dict[str, ActQuant] = field(default_factory=dict)
    weights: dict[str, WeightQuant] = field(default_factory=dict)
    fused: dict[str, str] = field(default_factory=dict)
    fused_activations: dict[str, str] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)
    float_nodes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def module_of(self, node: str) -> str:
        return self.modules.get(node, "")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "recipe": self.recipe.to_dict(),
            "activations": {k: [a.scale, a.zero_point, a.rule] for k, a in self.activations.items()},
            "weights": {
                k: {"weight": w.weight, "bias": w.bias, "input": w.input, "axis": w.axis,
                    "scales": list(w.scales), "bias_scales": None if w.bias_scales is None else list(w.bias_scales)}
                for k, w in self.weights.items()
            },
            "fused": self.fused,
            "fused_activations": self.fused_activations,
            "modules": self.modules,
            "float_nodes": self.float_nodes,
            "outputs": self.outputs,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1) + "\n"

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def from_json(cls, text: str, source: str = "the plan") -> QuantPlan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"{source} is not valid JSON: {exc}", "write the plan again with QuantPlan.save") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PlanError(f"{source} is not an edge-sdk QuantPlan (no \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise PlanError(f"{source} has plan version {data.get('version')!r}; this SDK reads version {VERSION}")
        try:
            plan = cls(
                recipe=QuantRecipe.from_dict(data["recipe"]),
                activations={k: ActQuant(float(s), int(z), str(r)) for k, (s, z, r) in data["activations"].items()},
                weights={k: WeightQuant(w["weight"], w["bias"], w["input"], int(w["axis"]), tuple(map(float, w["scales"])),
                                        None if w["bias_scales"] is None else tuple(map(float, w["bias_scales"])))
                         for k, w in data["weights"].items()},
                fused=dict(data["fused"]),
                fused_activations=dict(data["fused_activations"]),
                modules=dict(data["modules"]),
                float_nodes=list(data["float_nodes"]),
                outputs=list(data["outputs"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, RecipeError) as exc:
            raise PlanError(f"{source} is corrupt: missing or malformed field ({type(exc).__name__}: {exc})",
                            "recreate it with edge_sdk.quantize.quantize(...).plan.save(path)") from exc
        plan.validate(source)
        return plan

    @classmethod
    def load(cls, path) -> QuantPlan:
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError(f"cannot read the QuantPlan {path}: {exc}") from exc
        return cls.from_json(text, str(path))

    def validate(self, source: str = "the plan") -> None:
        """Raise PlanError on qparams no int8 kernel can use."""
        for name, a in self.activations.items():
            if not (math.isfinite(a.scale) and a.scale > 0 and -128 <= a.zero_point <= 127):
                raise PlanError(f"{source}: tensor {name!r} has invalid int8 qparams (scale {a.scale}, zero point {a.zero_point})")
        for name, w in self.weights.items():
            if not w.scales or not all(math.isfinite(s) and s > 0 for s in w.scales):
                raise PlanError(f"{source}: weights of {name!r} have invalid scales")
            if w.bias_scales is not None and len(w.bias_scales) != len(w.scales):
                raise PlanError(f"{source}: bias scales of {name!r} do not match its {len(w.scales)} channels")


def check_plan_matches(plan: QuantPlan, gm: torch.fx.GraphModule, source: str = "the plan") -> None:
    """Raise PlanError when `plan` names tensors or weights this graph does not have (a plan of another model)."""
    nodes = {n.name for n in gm.graph.nodes}
    tensors = dict(gm.named_parameters()) | dict(gm.named_buffers())
    missing = sorted((set(plan.activations) | set(plan.weights)) - nodes)
    missing += sorted(w.weight for w in plan.weights.values() if w.weight not in tensors)
    if missing:
        raise PlanError(f"{source} does not match this model: {len(missing)} tensors it names are not in the graph "
                        f"(e.g. {', '.join(missing[:3])})", "use the plan written for this model, or calibrate again")
    for name, w in plan.weights.items():
        channels = tensors[w.weight].shape[w.axis]
        if len(w.scales) not in (1, channels):
            raise PlanError(f"{source} does not match this model: {name} has {channels} channels, the plan {len(w.scales)}",
                            "use the plan written for this model, or calibrate again")


def build_plan(gm: torch.fx.GraphModule, rules: GraphRules, stats: dict[str, TensorStats], recipe: QuantRecipe) -> QuantPlan:
    """Turn calibration statistics into qparams under the graph's rules."""
    plan = QuantPlan(recipe, fused=dict(rules.fused), fused_activations=dict(rules.activations), modules=dict(rules.modules),
                     float_nodes=list(rules.float_nodes), outputs=list(rules.outputs))
    if recipe.scheme == "fp16":
        return plan
    groups: dict[str, tuple[float, float]] = {}
    fixed: dict[str, tuple[float, int, str]] = {}
    for p in rules.points:
        root = rules.shared.get(p, p)
        lo, hi = stats[p].choose(recipe.observer)
        g_lo, g_hi = groups.get(root, (0.0, 0.0))
        groups[root] = (min(g_lo, lo), max(g_hi, hi))
        if p in rules.fixed:
            fixed[root] = rules.fixed[p]
    for p in rules.points:
        root = rules.shared.get(p, p)
        if root in fixed:
            scale, zp, op = fixed[root]
            plan.activations[p] = ActQuant(float(np.float32(scale)), zp, f"fixed:{op}")
        else:
            scale, zp = affine_qparams(*groups[root])
            rule = f"shared:{root}" if p in rules.shared else f"observed:{recipe.observer}"
            plan.activations[p] = ActQuant(scale, zp, rule)
    for name, op in rules.weighted.items():
        w = gm.get_parameter(op.weight) if op.weight in dict(gm.named_parameters()) else gm.get_buffer(op.weight)
        scales = weight_scales(w if op.axis == 0 else w.t(), recipe.per_channel)
        bias_scales = None
        if op.bias is not None and op.input in plan.activations:
            bias_scales = tuple(float(s) for s in (np.float32(plan.activations[op.input].scale) * scales).astype(np.float32))
        plan.weights[name] = WeightQuant(op.weight, op.bias, op.input, op.axis, tuple(float(s) for s in scales), bias_scales)
    return plan
