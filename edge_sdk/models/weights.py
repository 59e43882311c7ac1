"""Loading a user's weights into a model, with a clear report of what did not fit."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError

# Where common training scripts nest the state dict inside a checkpoint.
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "model_ema", "net", "module")


def read_state_dict(source) -> dict[str, torch.Tensor]:
    """A state dict from a path (state dict, checkpoint or whole module), a module or a dict."""
    obj = source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist", "pass the path of a .pt/.pth file")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # A whole pickled nn.Module: only loadable with full unpickling.
            try:
                obj = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
                raise WeightsError(f"cannot read weights from {path}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways on a foreign file
            raise WeightsError(
                f"cannot read weights from {path}: {str(exc).splitlines()[0]}",
                "save them with torch.save(model.state_dict(), path)",
            ) from exc
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in _CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError("the weights hold no state dict (a mapping of names to tensors)",
                           "save them with torch.save(model.state_dict(), path)")
    prefixes = ("module.", "_orig_mod.")  # DataParallel / torch.compile wrappers
    return {next((k[len(p):] for p in prefixes if k.startswith(p)), k): v for k, v in obj.items()}


def load_weights(model: nn.Module, source) -> None:
    """Load `source` strictly into `model`; report missing, unexpected and mis-shaped keys by name."""
    state = read_state_dict(source)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        lines = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                lines.append(f"{label} ({len(keys)}): {', '.join(keys[:5])}{more}")
        raise WeightsError(
            "the weights do not fit the model: " + "; ".join(lines),
            "check the model name and its options (num_classes, width) match the checkpoint",
        )
    model.load_state_dict(state, strict=False)
