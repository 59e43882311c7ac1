"""ModelCard: what a deployed model needs to be fed and described correctly."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..data import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


@dataclass(frozen=True)
class ModelCard:
    """Static facts about one registered model (or a user model we were handed).

    `params` and `macs` are measured from the module itself (see `stats.py`), so
    they always describe the network that is actually built.
    """

    name: str
    family: str
    paper: str = ""
    paper_url: str = ""
    input_size: tuple[int, int, int] = (3, 224, 224)  # C, H, W
    num_classes: int = 1000
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    labels: str | None = "imagenet"
    task: str = "classification"  # or "embedding"
    description: str = ""
    # Who publishes the converted file, under which licence, which release: the user's to set
    # (`convert(..., author=, license=, model_version=)`); every target's metadata carries them.
    author: str = ""
    license: str = ""
    version: str = ""
    params: int | None = None
    macs: int | None = None
    config: dict = field(default_factory=dict)

    @property
    def preprocessing(self) -> Preprocessing:
        """The default evaluation transform: resize, centre crop, normalise (per the card)."""
        _, h, w = self.input_size
        return Preprocessing(
            size=(h, w),
            mean=self.mean,
            std=self.std,
            crop_pct=self.crop_pct,
            channels=self.input_size[0],
            interpolation=self.interpolation,
        )

    def with_(self, **changes) -> "ModelCard":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "paper": self.paper,
            "paper_url": self.paper_url,
            "task": self.task,
            "input_size": list(self.input_size),
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "labels": self.labels,
            "params": self.params,
            "macs": self.macs,
            "description": self.description,
            "author": self.author,
            "license": self.license,
            "version": self.version,
            "config": dict(self.config),
        }
