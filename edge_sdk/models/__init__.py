"""The model zoo: registry, model cards and one module per architecture family.

Adding a family means adding one module here that calls `@register_model`;
every module that is not part of the registry machinery is imported below.
"""

import importlib
import pkgutil

from .card import ModelCard
from .registry import create_model, get_model_card, list_models, register_model, unsupported_reason
from .stats import count_macs, count_params

_MACHINERY = {"blocks", "card", "labels", "registry", "stats", "user", "weights"}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _MACHINERY and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "ModelCard",
    "count_macs",
    "count_params",
    "create_model",
    "get_model_card",
    "list_models",
    "register_model",
    "unsupported_reason",
]
