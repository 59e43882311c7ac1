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

from ..data import PARITY_PHOTOS, photo_batch
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
    params, macs = _stats(name, tuple(sorted(options.items())))
    model.card = card.with_(
        params=params,
        macs=macs,
        num_classes=options.get("num_classes", card.num_classes),
        input_size=(c, h, w),
        labels=card.labels if options.get("num_classes", card.num_classes) == card.num_classes else None,
        config={**card.config, **kwargs},
    )
    if weights is not None:
        from .weights import load_weights

        load_weights(model, weights)
    else:
        _settle_batchnorm(model, model.card, seed)
    model.random_weights = weights is None  # int8 quality cannot be judged on these (verify/parity.py)
    return model.eval()


def _settle_batchnorm(model: nn.Module, card: ModelCard, seed: int) -> None:
    """Give a randomly initialised model BatchNorm statistics from real photographs.

    With the default statistics (mean 0, var 1), or statistics taken on noise,
    activations of a deep random network grow or shrink by a factor per layer
    on photos, and the logits become ~1e-9 or ~1e4: so ill-conditioned that
    fp32 itself disagrees with fp64 by percents and parity proves nothing. One
    pass in train mode over the bundled photos gives
    every BatchNorm the statistics of its real input, and random models produce
    well-scaled logits that fp32 computes to ~1e-5. Noise is the fallback when
    scikit-image is not installed.

    The photos go through in one batch, even for EfficientNet-B7 (2.1 GB while
    settling): split into parts, each BatchNorm averaged the parts' statistics,
    missed the spread between them, and eval mode then widened every layer a
    little more than train mode had; over depth that made ConvMixer-768/32's
    activations reach 2.75e5 (past float16) and EfficientNet-B7 chaotic.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    try:  # scikit-image (the photos) is an optional extra
        # The same photos parity uses by default: a random network is well conditioned
        # only on inputs like those its statistics came from.
        batch = torch.from_numpy(photo_batch(card.preprocessing, PARITY_PHOTOS))
    except ImportError:
        batch = torch.randn((PARITY_PHOTOS, *card.input_size), generator=torch.Generator().manual_seed(seed))
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0  # the statistics of this one batch, nothing of the defaults
    model.train()
    with torch.no_grad():
        model(batch)  # one batch: the statistics eval mode uses are exactly those of these photos
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
