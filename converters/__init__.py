"""Converters: one module per target, each `convert(graph, out_path, ...) -> Artifact`."""

from .base import TARGETS, Artifact, TargetInfo

__all__ = ["TARGETS", "Artifact", "TargetInfo"]
