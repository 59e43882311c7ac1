"""Parametrisation over the model registry, shared by the per-target zoo tests.

A model added to the registry is tested on every target automatically. Models over
LARGE_MACS at their paper resolution take minutes per target on 2 cores and are
marked slow (`pytest -m slow` runs them); a known failure carries what was measured.
"""

import pytest

from edge_sdk.models import get_model_card, list_models

LARGE_MACS = 3e9


def registry_params(known_failures: dict[str, str] | None = None) -> list:
    known_failures = known_failures or {}
    params = []
    for name in list_models():
        marks = [pytest.mark.slow] if get_model_card(name).macs > LARGE_MACS else []
        if name in known_failures:
            marks.append(pytest.mark.xfail(reason=known_failures[name], strict=True))
        params.append(pytest.param(name, marks=marks, id=name))
    return params
