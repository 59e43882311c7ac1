"""Parametrisation over the model registry, shared by the per-target zoo tests.

A model added to the registry is tested on every target automatically. The default
suite converts one model per family, its smallest, when that is under DEFAULT_MACS:
that covers every family's operators in minutes. Every other model is marked slow
(`pytest -m slow` runs them; each takes from seconds to minutes per target on 2 cores).
A known failure carries what was measured.
"""

import pytest

from edge_sdk.models import get_model_card, list_models

DEFAULT_MACS = 1.3e9


def default_models() -> set[str]:
    """The smallest model of each family, when it is small enough for the default suite."""
    smallest: dict[str, tuple[int, str]] = {}
    for name in list_models():
        card = get_model_card(name)
        smallest[card.family] = min(smallest.get(card.family, (card.macs, name)), (card.macs, name))
    return {name for macs, name in smallest.values() if macs <= DEFAULT_MACS}


def registry_params(known_failures: dict[str, str] | None = None, slow: tuple[str, ...] = ()) -> list:
    """One param per registered model; `slow` names default models that are slow on this target."""
    known_failures = known_failures or {}
    fast = default_models() - set(slow)
    params = []
    for name in list_models():
        marks = [] if name in fast else [pytest.mark.slow]
        if name in known_failures:
            marks.append(pytest.mark.xfail(reason=known_failures[name], strict=True))
        params.append(pytest.param(name, marks=marks, id=name))
    return params
