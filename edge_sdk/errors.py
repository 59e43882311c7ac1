"""Typed errors: each says what was wrong and what to do about it.

The CLI turns any `EdgeSDKError` into one message and exit code 2; everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgeSDKError(Exception):
    """Base class: `message` says what went wrong, `hint` what to do instead."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UnknownModelError(EdgeSDKError, KeyError):
    """A model name that is not registered."""


class WeightsError(EdgeSDKError):
    """A weights file that cannot be read or does not fit the model."""


class ModelSourceError(EdgeSDKError):
    """A user model reference (`file.py:factory`, `.pt2`) that cannot be loaded."""


class CaptureError(EdgeSDKError):
    """torch.export could not capture the model."""


class ConversionError(EdgeSDKError):
    """A converter failed; the message names the target and the reason."""


class ArtifactError(EdgeSDKError):
    """An artifact file that is missing, unreadable, corrupt or of an unknown kind."""


class InputError(EdgeSDKError, ValueError):
    """Inputs that do not match a session's or model's input specs."""


class DataError(EdgeSDKError):
    """Sample data (image folder, .npy file) that cannot be used."""


class OutputPathError(EdgeSDKError):
    """An output location that cannot be written."""


class MissingDependencyError(EdgeSDKError, ImportError):
    """An optional dependency is not installed; names the extra that brings it."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed",
            f"pip install 'edge-sdk[{extra}]'",
        )
        self.package = package
        self.extra = extra


def require(module: str, *, package: str | None = None, extra: str, purpose: str):
    """Import an optional dependency or raise MissingDependencyError naming its extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package or module.split(".")[0], extra, purpose) from exc
