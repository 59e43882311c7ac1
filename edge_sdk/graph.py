"""Capture: any nn.Module + example input -> the one graph every converter reads.

`capture` runs `torch.export` (non-strict), decomposes to core ATen, then
cleans the graph for deployment: BatchNorm folded into the convolution that
feeds it, dropout / identity clones removed, export's guard call removed.
Every node keeps `nn_module_stack`, so `module_path(node)` names the torch
module that produced it (quantisation reports and plans are keyed by that).
"""

from __future__ import annotations

import gc
import operator
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from .errors import CaptureError

aten = torch.ops.aten

_BN_OPS = {aten._native_batch_norm_legit_no_training.default}
_CONV_OPS = {aten.convolution.default, aten.conv2d.default}


@dataclass
class CapturedGraph:
    """A deployable, core-ATen fx graph with its parameters as attributes."""

    module: fx.GraphModule
    example_inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    card: Any = None  # ModelCard when known
    random_weights: bool = False  # a zoo model without trained weights: int8 calibrates on the parity photos
    seconds: float = 0.0
    folded_batchnorms: int = 0
    notes: list[str] = field(default_factory=list)
    # The decomposed torch.export program the graph was cleaned from, and the graph's code at that
    # moment: a converter that takes an ExportedProgram (coremltools) reuses it instead of exporting
    # again (~4 s for MobileNetV2), as long as the graph was not edited since.
    program: Any = field(default=None, repr=False)
    _captured_code: str = field(default="", repr=False)

    def unchanged_program(self):
        """The static-shape ExportedProgram this graph still computes exactly, else None."""
        if self.program is None or self.dynamic_batch or self.module.code != self._captured_code:
            return None
        return self.program

    @property
    def nodes(self) -> list[fx.Node]:
        return list(self.module.graph.nodes)

    @property
    def dynamic_batch(self) -> bool:
        """Whether dimension 0 of the inputs is symbolic (captured with dynamic_batch=True)."""
        return any(n.op == "placeholder" and isinstance(n.meta.get("val"), torch.Tensor)
                   and not isinstance(n.meta["val"].shape[0], int) for n in self.module.graph.nodes)

    @property
    def output_width(self) -> int | None:
        """The last dimension of the first output (a classifier's class count), from the graph's shape metadata."""
        output = next(n for n in reversed(self.nodes) if n.op == "output")
        first = output.args[0][0] if isinstance(output.args[0], (list, tuple)) else output.args[0]
        value = first.meta.get("val") if isinstance(first, fx.Node) else None
        return int(value.shape[-1]) if value is not None and value.ndim else None

    def __call__(self, *inputs: torch.Tensor):
        with torch.no_grad():
            return self.module(*inputs)

    def op_counts(self) -> dict[str, int]:
        """How often each ATen op occurs: a quick view of what a converter must express."""
        counts: dict[str, int] = {}
        for n in self.module.graph.nodes:
            if n.op == "call_function":
                key = getattr(n.target, "__name__", str(n.target))
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))


def module_path(node: fx.Node) -> str:
    """The dotted path of the innermost torch module that produced `node` ('' for the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    return list(stack.values())[-1][0]


def capture(model, example_inputs, *, card=None, dynamic_batch: bool = False) -> CapturedGraph:
    """Export `model` (an nn.Module or a torch.export.ExportedProgram) for deployment.

    The graph has a fixed batch size (that of `example_inputs`) unless
    `dynamic_batch`, which makes dimension 0 of every input symbolic.
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    with _collector_paused():
        return _capture(model, tuple(example_inputs), card, dynamic_batch)


@contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while torch.export runs.

    Export and decomposition allocate millions of short-lived objects, and each
    collection walks all of them: a quarter of MobileNetV2's capture time (3.4 -> 2.6 s).
    What they leave behind is collected as usual once the collector is back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _capture(model, example_inputs: tuple, card, dynamic_batch: bool) -> CapturedGraph:
    start = time.perf_counter()
    dynamic_shapes = None
    if dynamic_batch:
        # A batch of 1 would be specialised by export; trace with 2 so the dimension stays symbolic.
        example_inputs = tuple(x if x.shape[0] > 1 else torch.cat([x, x]) for x in example_inputs)
        batch = torch.export.Dim("batch", min=1, max=65536)
        dynamic_shapes = tuple({0: batch} for _ in example_inputs)
    if isinstance(model, torch.export.ExportedProgram):
        if dynamic_batch:
            raise CaptureError("a saved torch.export program keeps the batch size it was exported with",
                               "re-export it with dynamic_shapes, or convert without --dynamic-batch")
        program = model
    else:
        if not isinstance(model, nn.Module):
            raise CaptureError(f"cannot capture a {type(model).__name__}", "pass an nn.Module or a torch.export program")
        model = model.eval()
        try:
            with torch.no_grad():
                program = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes, strict=False)
        except Exception as exc:  # torch.export raises many types; all mean "not capturable"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CaptureError(
                f"torch.export could not capture {type(model).__name__}: {first[:400]}",
                "remove data-dependent control flow and Python-side tensor reads from forward()",
            ) from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = program.run_decompositions()
    gm = _plain_graph_module(program.module())
    folded = _clean(gm)
    gm.graph.lint()
    gm.recompile()
    inputs = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    outputs = out_node.args[0] if isinstance(out_node.args[0], (tuple, list)) else [out_node.args[0]]
    names = [f"output_{i}" if len(outputs) > 1 else "output" for i in range(len(outputs))]
    return CapturedGraph(
        module=gm,
        example_inputs=example_inputs,
        input_names=inputs,
        output_names=names,
        card=card if card is not None else getattr(model, "card", None),
        random_weights=getattr(model, "random_weights", False),
        seconds=time.perf_counter() - start,
        folded_batchnorms=folded,
        program=program,
        _captured_code=gm.code,
    )


def _plain_graph_module(unlifted: fx.GraphModule) -> fx.GraphModule:
    """A plain GraphModule (no pytree codegen, no input guards, train()/eval() allowed)."""
    graph = fx.Graph()
    value_map: dict[fx.Node, fx.Node] = {}
    out = graph.graph_copy(unlifted.graph, value_map)
    graph._codegen = fx.graph.CodeGen()
    output = next(n for n in graph.nodes if n.op == "output") if out is None else None
    if output is None:
        graph.output(out)
    gm = fx.GraphModule(unlifted, graph)
    return gm.eval()


def _clean(gm: fx.GraphModule) -> int:
    """Remove export-only nodes and fold BatchNorm; returns how many BatchNorms were folded."""
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn":
            graph.erase_node(node)
        elif node.op == "call_function" and node.target in (aten.clone.default, aten.alias.default) and _is_plain_copy(node):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    if hasattr(gm, "_guards_fn"):
        delattr(gm, "_guards_fn")
    folded = sum(_fold_batchnorm(gm, node) for node in list(graph.nodes) if node.target in _BN_OPS)
    graph.eliminate_dead_code()
    _drop_unused_attributes(gm)
    return folded


def _is_plain_copy(node: fx.Node) -> bool:
    """A clone that only copies (eval-mode dropout), not one that makes a tensor contiguous.

    Decomposed `reshape` of a strided tensor is clone(contiguous) + view: that clone must stay.
    """
    if "memory_format" not in node.kwargs:
        return True
    source = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
    return source is not None and source.is_contiguous()


def _attr(gm: fx.GraphModule, node) -> torch.Tensor | None:
    if isinstance(node, fx.Node) and node.op == "get_attr":
        obj = gm
        for part in node.target.split("."):
            obj = getattr(obj, part)
        return obj
    return None


def _fold_batchnorm(gm: fx.GraphModule, bn: fx.Node) -> bool:
    """Fold an inference BatchNorm into the convolution feeding it, when that is safe."""
    conv, weight, bias, mean, var, _momentum, eps = bn.args
    users = list(bn.users)
    if not (
        isinstance(conv, fx.Node)
        and conv.target in _CONV_OPS
        and len(conv.users) == 1
        and all(u.target is operator.getitem and u.args[1] == 0 for u in users)
    ):
        return False
    w_conv = _attr(gm, conv.args[1])
    tensors = [_attr(gm, a) if a is not None else None for a in (weight, bias, mean, var)]
    if w_conv is None or tensors[2] is None or tensors[3] is None:
        return False
    if conv.target is aten.convolution.default and conv.args[6]:  # transposed conv: different weight layout
        return False
    gamma, beta, mu, sigma2 = tensors
    b_conv = _attr(gm, conv.args[2]) if len(conv.args) > 2 else None
    inv_std = torch.rsqrt(sigma2.double() + eps)
    scale = inv_std * (gamma.double() if gamma is not None else 1.0)
    new_w = (w_conv.double() * scale.reshape(-1, *([1] * (w_conv.dim() - 1)))).to(w_conv.dtype)
    base = b_conv.double() if b_conv is not None else torch.zeros_like(mu, dtype=torch.float64)
    new_b = ((base - mu.double()) * scale + (beta.double() if beta is not None else 0.0)).to(w_conv.dtype)
    prefix = conv.args[1].target.rsplit(".", 1)[0] if "." in conv.args[1].target else conv.name
    w_name = _register(gm, f"{prefix}.folded_weight", new_w)
    b_name = _register(gm, f"{prefix}.folded_bias", new_b)
    with gm.graph.inserting_before(conv):
        w_node = gm.graph.get_attr(w_name)
        b_node = gm.graph.get_attr(b_name)
    args = list(conv.args)
    args[1] = w_node
    if len(args) > 2:
        args[2] = b_node
    else:
        args.append(b_node)
    conv.args = tuple(args)
    for user in users:
        user.replace_all_uses_with(conv)
        gm.graph.erase_node(user)
    gm.graph.erase_node(bn)
    return True


def _register(gm: fx.GraphModule, name: str, tensor: torch.Tensor) -> str:
    owner_path, _, leaf = name.rpartition(".")
    owner = gm.get_submodule(owner_path) if owner_path else gm
    owner.register_buffer(leaf, tensor.detach().contiguous())
    return name


def _drop_unused_attributes(gm: fx.GraphModule) -> None:
    """Forget parameters / buffers no node reads any more (folded BatchNorm statistics)."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner_path, _, leaf = name.rpartition(".")
            owner = gm.get_submodule(owner_path) if owner_path else gm
            if leaf in owner._parameters:
                del owner._parameters[leaf]
            elif leaf in owner._buffers:
                del owner._buffers[leaf]
