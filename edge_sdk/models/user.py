"""A user's own model: `path/to/file.py:factory`, a saved torch.export program (.pt2), or an nn.Module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelSourceError
from .card import ModelCard

DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)


def is_user_reference(name: str) -> bool:
    """True for `file.py:factory` and `.pt2` paths (anything else is a registry name)."""
    return name.endswith(".pt2") or (".py:" in name) or name.endswith(".py")


def load_factory(reference: str, **kwargs) -> nn.Module:
    """Import `file.py` and call `factory(**kwargs)`; it must return an nn.Module."""
    file, sep, factory = reference.rpartition(":")
    if not sep or not file.endswith(".py"):
        raise ModelSourceError(f"cannot read {reference!r} as a model reference", "write it as path/to/file.py:factory_name")
    path = Path(file)
    if not path.is_file():
        raise ModelSourceError(f"model file {path} does not exist")
    module_name = f"edge_sdk_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelSourceError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, factory, None)
    if not callable(fn):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ModelSourceError(f"{path} has no callable {factory!r}", f"callables there: {', '.join(found) or 'none'}")
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        raise ModelSourceError(f"calling {factory}() failed: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelSourceError(f"{factory}() returned a {type(model).__name__}, not an nn.Module")
    return model.eval()


def load_program(path: str | Path) -> torch.export.ExportedProgram:
    path = Path(path)
    if not path.is_file():
        raise ModelSourceError(f"{path} does not exist")
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # torch raises several types for unreadable archives
        raise ModelSourceError(f"{path} is not a loadable torch.export program: {exc}",
                               "save one with torch.export.save(torch.export.export(model, args), path)") from exc


def program_input_shape(program: torch.export.ExportedProgram) -> tuple[int, ...]:
    users = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in users:
            return tuple(int(d) for d in node.meta["val"].shape)
    raise ModelSourceError("the program takes no tensor input")


def user_card(name: str, input_shape: tuple[int, ...], num_classes: int | None = None) -> ModelCard:
    """A card for a model we know nothing about: input size from the shape, ImageNet normalisation."""
    c, h, w = (input_shape[1:] + (1, 1, 1))[:3] if len(input_shape) >= 2 else (1, 1, 1)
    return ModelCard(
        name=name,
        family="user",
        input_size=(c, h, w),
        num_classes=num_classes or 0,
        labels=None,
        description="user model (ImageNet mean/std assumed for sample preprocessing)",
    )
