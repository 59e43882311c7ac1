"""QuantizedModel: the captured graph run in PyTorch with the plan's exact int8 numerics.

Fake-quant sits at exactly the plan's points: weights rounded per channel to
[-127, 127], biases to int32 at input_scale x weight_scale, activations to int8 after
the (fused) op that produces them. So accuracy is known before any export, and an
emitter that follows the plan reproduces these outputs up to integer rounding.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import fx, nn

from ..graph import CapturedGraph
from .plan import QuantPlan

INT32_MAX = 2**31 - 1


class QuantizedModel(nn.Module):
    """The captured graph + its QuantPlan, callable like the float model.

    `weights` / `activations` restrict the simulation to some of the plan's points
    (used by the sensitivity analysis); by default every point is quantised.
    """

    def __init__(self, graph: CapturedGraph, plan: QuantPlan, *, weights=None, activations=None):
        super().__init__()
        self.graph = graph
        self.plan = plan
        self.sensitivity = None  # a SensitivityReport once computed
        self.module = simulated_module(graph.module, plan, weights=weights, activations=activations)
        self.batch_size = batch_size_for(graph)

    def forward(self, *inputs):
        with torch.no_grad():
            return self.module(*inputs)

    def predict(self, samples) -> np.ndarray:
        """Outputs (first output) for float32 NCHW `samples`, batched."""
        return run_batched(self.module, samples, self.batch_size)

    def save_plan(self, path):
        return self.plan.save(path)


_SHAPE_FIXING = {torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default, torch.ops.aten.reshape.default,
                 torch.ops.aten.expand.default}


def batch_size_for(graph: CapturedGraph, preferred: int = 64) -> int:
    """The batch a graph can run: a captured reshape bakes in the example's batch size."""
    fixed = any(n.op == "call_function" and n.target in _SHAPE_FIXING for n in graph.module.graph.nodes)
    return graph.example_inputs[0].shape[0] if fixed else preferred


def run_batched(module, samples, batch_size: int) -> np.ndarray:
    x = torch.as_tensor(np.asarray(samples, np.float32))
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = module(x[i : i + batch_size])
            outs.append((out[0] if isinstance(out, (tuple, list)) else out).numpy())
    return np.concatenate(outs)


def simulated_module(gm: fx.GraphModule, plan: QuantPlan, *, weights=None, activations=None) -> fx.GraphModule:
    """A copy of `gm` with the plan's fake-quant applied (optionally only at the named points)."""
    sim = copy.deepcopy(gm)
    if plan.recipe.scheme == "fp16":
        _round_fp16(sim)
        return sim
    enabled_acts = set(plan.activations if activations is None else activations)
    for name, w in plan.weights.items():
        if weights is not None and name not in weights:
            continue
        weight = _tensor(sim, w.weight)
        scales = torch.tensor(w.scales, dtype=torch.float32)
        shape = [-1 if d == w.axis else 1 for d in range(weight.dim())]
        q = torch.clamp(torch.round(weight / scales.reshape(shape)), -127, 127)
        weight.copy_(q * scales.reshape(shape))
        if w.bias is not None and w.bias_scales is not None and w.input in enabled_acts:
            bias = _tensor(sim, w.bias)
            bias_scales = torch.tensor(w.bias_scales, dtype=torch.float32)
            bias.copy_(torch.clamp(torch.round(bias / bias_scales), -INT32_MAX, INT32_MAX) * bias_scales)
    graph = sim.graph
    for node in list(graph.nodes):
        a = plan.activations.get(node.name)
        if a is None or node.name not in enabled_acts:
            continue
        with graph.inserting_after(node):
            fq = graph.call_function(torch.fake_quantize_per_tensor_affine, (node, a.scale, a.zero_point, -128, 127))
        node.replace_all_uses_with(fq, delete_user_cb=lambda user, fq=fq: user is not fq)
    sim.recompile()
    return sim


def _round_fp16(sim: fx.GraphModule) -> None:
    """fp16 simulation: weights and every float activation pass through float16."""
    with torch.no_grad():
        for t in list(sim.parameters()) + list(sim.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    graph = sim.graph
    for node in list(graph.nodes):
        val = node.meta.get("val")
        if node.op in ("placeholder", "call_function") and isinstance(val, torch.Tensor) and val.is_floating_point():
            with graph.inserting_after(node):
                half = graph.call_function(torch.ops.aten._to_copy.default, (node,), {"dtype": torch.float16})
            with graph.inserting_after(half):
                back = graph.call_function(torch.ops.aten._to_copy.default, (half,), {"dtype": torch.float32})
            node.replace_all_uses_with(back, delete_user_cb=lambda user, half=half: user is not half)
    sim.recompile()


def _tensor(gm: fx.GraphModule, target: str) -> torch.Tensor:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.data if isinstance(obj, nn.Parameter) else obj
