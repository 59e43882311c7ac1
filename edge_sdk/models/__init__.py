"""The model zoo: registry, model cards and one module per architecture family."""

from . import mobilenet_v2  # noqa: F401  (registers its builders)
from .card import ModelCard
from .registry import create_model, get_model_card, list_models, register_model, unsupported_reason
from .stats import count_macs, count_params

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
