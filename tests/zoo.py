"""Parametrisation over the model registry, shared by the per-target zoo tests.

A model added to the registry is tested on every target automatically. The default
suite converts one model per family, its smallest, when that is under DEFAULT_MACS:
that covers every family's operators in minutes. Every other model is marked slow
(`pytest -m slow` runs them; each takes from seconds to minutes per target on 2 cores).
"""

import functools

import pytest
import torch

import edge_sdk
from edge_sdk.models import get_model_card, list_models

DEFAULT_MACS = 1.3e9


def default_models() -> set[str]:
    """The smallest model of each family, when it is small enough for the default suite."""
    smallest: dict[str, tuple[int, str]] = {}
    for name in list_models():
        card = get_model_card(name)
        smallest[card.family] = min(smallest.get(card.family, (card.macs, name)), (card.macs, name))
    return {name for macs, name in smallest.values() if macs <= DEFAULT_MACS}


def registry_params(slow: tuple[str, ...] = ()) -> list:
    """One param per registered model; `slow` names default models that are slow on this target."""
    fast = default_models() - set(slow)
    return [pytest.param(name, marks=[] if name in fast else [pytest.mark.slow], id=name) for name in list_models()]


_CAPTURES: dict[str, tuple] = {}


def zoo_model(name: str):
    """(model, captured graph) of `name` (seed 0): a default model is built and captured once per session,
    and every target's zoo test converts that one graph (capture is seconds per model); others each time."""
    if name in _CAPTURES:
        return _CAPTURES[name]
    model = edge_sdk.create_model(name)
    pair = model, edge_sdk.capture(model, (torch.randn(1, *model.card.input_size),), card=model.card)
    if name in _default_models():
        _CAPTURES[name] = pair
    return pair


@functools.cache
def _default_models() -> frozenset:
    return frozenset(default_models())
