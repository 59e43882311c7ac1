"""QuantizedModel: the captured graph run in PyTorch with the plan's exact int8 numerics.

Fake-quant sits at exactly the plan's points: weights rounded per channel to
[-127, 127], biases to int32 at input_scale x weight_scale, activations to int8 after
the (fused) op that produces them. So accuracy is known before any export, and an
emitter that follows the plan reproduces these outputs up to integer rounding.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import torch
from torch import fx, nn

from ..graph import CapturedGraph
from .batched import batch_size_for, run_batched
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
        self.calibration = ""  # where the ranges came from, set by quantize()
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


class _FakeQuant(nn.Module):
    """One activation point of the plan; switchable so one copy of the graph serves every sensitivity run."""

    def __init__(self, scale: float, zero_point: int):
        super().__init__()
        self.scale, self.zero_point, self.enabled = scale, zero_point, True

    def forward(self, x):
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, -128, 127) if self.enabled else x


class Simulation:
    """A copy of the graph with every point of the plan inserted and individually switchable.

    Weights are held both float and quantised and swapped in place, so enabling another
    set of points costs a few tensor copies, not another copy of the model.
    """

    def __init__(self, gm: fx.GraphModule, plan: QuantPlan):
        self.plan = plan
        self.module = copy.deepcopy(gm)
        self.points: dict[str, _FakeQuant] = {}
        self._float: dict[str, torch.Tensor] = {}
        self._quant: dict[str, torch.Tensor] = {}
        self._state: dict[str, bool] = {}  # tensor -> currently holds its quantised values
        if plan.recipe.scheme == "fp16":
            _round_fp16(self.module)
            return
        for name, w in plan.weights.items():
            weight = _tensor(self.module, w.weight)
            scales = torch.tensor(w.scales, dtype=torch.float32).reshape([-1 if d == w.axis else 1 for d in range(weight.dim())])
            self._float[w.weight] = weight.clone()
            self._quant[w.weight] = torch.clamp(torch.round(weight / scales), -127, 127) * scales
            if w.bias is not None and w.bias_scales is not None:
                bias = _tensor(self.module, w.bias)
                bias_scales = torch.tensor(w.bias_scales, dtype=torch.float32)
                self._float[w.bias] = bias.clone()
                self._quant[w.bias] = torch.clamp(torch.round(bias / bias_scales), -INT32_MAX, INT32_MAX) * bias_scales
        graph = self.module.graph
        for node in list(graph.nodes):
            a = plan.activations.get(node.name)
            if a is None:
                continue
            self.points[node.name] = fq = _FakeQuant(a.scale, a.zero_point)
            self.module.add_module(f"fq_{node.name}", fq)
            with graph.inserting_after(node):
                call = graph.call_module(f"fq_{node.name}", (node,))
            node.replace_all_uses_with(call, delete_user_cb=lambda user, call=call: user is not call)
        self.module.recompile()

    def enable(self, weights=None, activations=None) -> fx.GraphModule:
        """Quantise only the named weighted layers / activation tensors (None: all of them)."""
        acts = set(self.points if activations is None else activations)
        for name, fq in self.points.items():
            fq.enabled = name in acts
        for name, w in self.plan.weights.items():
            on = weights is None or name in weights
            self._set(w.weight, on)
            if w.bias in self._quant:  # int32 bias needs the input's scale, so only with the input quantised
                self._set(w.bias, on and w.input in acts)
        return self.module

    def _set(self, target: str, quantised: bool) -> None:
        if self._state.get(target) != quantised:
            _tensor(self.module, target).copy_(self._quant[target] if quantised else self._float[target])
            self._state[target] = quantised


@contextmanager
def rounding_jitter(module: nn.Module, relative: float, seed: int):
    """Within the block, every activation point of `module` moves its input by `relative` Gaussian noise before
    rounding: what another engine's summation order does to each int8 tensor. Measures how far a network
    amplifies rounding ties resolved differently (verify/parity.py)."""
    generator = torch.Generator().manual_seed(seed)

    def jitter(_, args):
        x = args[0]
        return (x * (1 + relative * torch.randn(x.shape, generator=generator, dtype=x.dtype)),)

    handles = [m.register_forward_pre_hook(jitter) for m in module.modules() if isinstance(m, _FakeQuant)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def simulated_module(gm: fx.GraphModule, plan: QuantPlan, *, weights=None, activations=None) -> fx.GraphModule:
    """A copy of `gm` with the plan's fake-quant applied (optionally only at the named points)."""
    return Simulation(gm, plan).enable(weights, activations)


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
