"""QuantRecipe: what the user asks of quantisation, before any data is seen.

A recipe is small, frozen and serialisable so that it can be written into a
QuantPlan and an artifact manifest: the decisions can always be traced back to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import EdgeSDKError

SCHEMES = ("int8", "int8-weights", "fp16")
OBSERVERS = ("minmax", "percentile", "mse")
IO_DTYPES = ("float32", "int8", "uint8")


class RecipeError(EdgeSDKError, ValueError):
    """A recipe field with a value quantisation cannot use."""


@dataclass(frozen=True)
class QuantRecipe:
    """How to quantise.

    scheme: `int8` (int8 weights per channel + int8 activations per tensor),
    `int8-weights` (int8 weights, float activations) or `fp16`.
    observer: how activation ranges are chosen from calibration data. On the digits
    models (benchmarks/digits_int8.py) the three observers land within one test image
    of each other; `mse` is the default because it alone adapts to outliers without
    a fixed tail fraction.
    keep_float: torch module paths (prefixes match submodules) or graph node names.
    """

    scheme: str = "int8"
    per_channel: bool = True
    observer: str = "mse"
    calibration_samples: int = 256
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    keep_float: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        _check("scheme", self.scheme, SCHEMES)
        _check("observer", self.observer, OBSERVERS)
        _check("input_dtype", self.input_dtype, IO_DTYPES)
        _check("output_dtype", self.output_dtype, IO_DTYPES)
        if self.calibration_samples < 1:
            raise RecipeError(f"calibration_samples must be >= 1, not {self.calibration_samples}")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))

    def to_dict(self) -> dict:
        return {**asdict(self), "keep_float": list(self.keep_float)}

    @classmethod
    def from_dict(cls, data: dict) -> QuantRecipe:
        try:
            return cls(**{**data, "keep_float": tuple(data.get("keep_float", ()))})
        except TypeError as exc:
            raise RecipeError(f"not a quantisation recipe: {exc}") from exc


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise RecipeError(f"{name} {value!r} is not one of {', '.join(allowed)}", f"pass {name}={allowed[0]!r}")
