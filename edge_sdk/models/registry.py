"""The model registry: `@register_model`, `create_model`, `list_models`, `get_model_card`.

Each family module registers keyword-only builders named after their variant
(timm style). A builder takes `num_classes`, `in_chans` and `img_size` plus its
own options and returns an `nn.Module`; `create_model` seeds the initialisation,
loads user weights and attaches the ModelCard as `model.card`.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
from torch import nn

from ..errors import UnknownModelError
from .card import ModelCard


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    card: ModelCard
    unsupported: Callable[[str, str], str | None] | None


_REGISTRY: dict[str, _Entry] = {}


def register_model(card: ModelCard, *, unsupported: Callable[[str, str], str | None] | None = None):
    """Register `builder` under `card.name`.

    `unsupported(target, precision) -> reason | None` lets a model decline a
    target up front instead of failing deep inside a converter.
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} registered twice")
        _REGISTRY[card.name] = _Entry(builder, card, unsupported)
        return builder

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, e.g. `mobilenet*`."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern.lower()))


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"did you mean: {', '.join(close)}?" if close else "run `edge-sdk list` to see every model"
        raise UnknownModelError(f"unknown model {name!r}", hint) from None


def unsupported_reason(name: str, target: str, precision: str = "fp32") -> str | None:
    """Why `name` cannot go to `target` at `precision`, or None when it can."""
    check = _entry(name).unsupported
    return check(target, precision) if check else None


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    weights=None,
    in_chans: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    seed: int = 0,
    **kwargs,
) -> nn.Module:
    """Build a registered model in eval mode, deterministically initialised from `seed`.

    `weights` is a path to a state dict / checkpoint / whole pickled module, or a
    state dict; keys that are missing or unexpected are reported by name.
    """
    entry = _entry(name)
    card = entry.card
    options = dict(kwargs)
    if num_classes is not None:
        options["num_classes"] = num_classes
    if in_chans is not None:
        options["in_chans"] = in_chans
    if img_size is not None:
        options["img_size"] = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    _check_options(name, entry.builder, options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = entry.builder(**options)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise TypeError(f"{name} does not take that option ({exc}); it accepts num_classes, in_chans, "
                            f"img_size and the options of its family") from None
    c = options.get("in_chans", card.input_size[0])
    h, w = options.get("img_size", card.input_size[1:])
    if weights is not None:
        from .weights import load_weights

        load_weights(model, weights)
    else:
        _settle_batchnorm(model, (2, c, h, w), seed)
    params, macs = _stats(name, tuple(sorted(options.items())))
    model.card = card.with_(
        params=params,
        macs=macs,
        num_classes=options.get("num_classes", card.num_classes),
        input_size=(c, h, w),
        labels=card.labels if options.get("num_classes", card.num_classes) == card.num_classes else None,
        config={**card.config, **{k: v for k, v in kwargs.items()}},
    )
    return model.eval()


def _settle_batchnorm(model: nn.Module, input_shape: tuple[int, ...], seed: int) -> None:
    """Give a randomly initialised model BatchNorm statistics from one seeded forward pass.

    With the default statistics (mean 0, var 1) activations of a deep random
    network shrink or explode layer by layer, and its logits end up ~1e-9: parity
    on such outputs proves little. One pass in train mode on seeded noise gives
    every BatchNorm the statistics of its actual input, so random models produce
    well-scaled, decisive logits.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = None  # cumulative average: one pass sets the statistics exactly
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    model.train()
    with torch.no_grad():
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.num_batches_tracked.zero_()
    model.eval()


def _check_options(name: str, builder: Callable, options: dict) -> None:
    params = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        accepted = ", ".join(sorted(p for p in params))
        raise TypeError(f"{name} does not take {', '.join(unknown)}; it accepts: {accepted}")


def get_model_card(name: str) -> ModelCard:
    """The card of `name` with params and MACs measured at its default configuration."""
    params, macs = _stats(name, ())
    return _entry(name).card.with_(params=params, macs=macs)


@lru_cache(maxsize=None)
def _stats(name: str, options: tuple) -> tuple[int, int]:
    """Params and MACs of `name` built with `options`, counted on the meta device (no memory)."""
    from .stats import count_macs, count_params

    entry = _entry(name)
    kwargs = dict(options)
    c = kwargs.get("in_chans", entry.card.input_size[0])
    h, w = kwargs.get("img_size", entry.card.input_size[1:])
    with torch.device("meta"):
        model = entry.builder(**kwargs).eval()
    return count_params(model), count_macs(model, (1, c, h, w))
