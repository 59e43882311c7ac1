"""The quantisation summary: what an int8 conversion decided, printed at the end of a run and kept in the manifest.

It reads only the QuantizedModel (plan, calibration, sensitivity); the predicted and
measured agreement next to it come from the parity report, which runs the simulation
and the artifact on the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .simulate import QuantizedModel


@dataclass(frozen=True)
class QuantSummary:
    scheme: str
    observer: str
    calibration: str
    int8_layers: list[str]  # torch module paths (graph node names where no module is known)
    float_layers: list[str]
    sensitive: list[dict] = field(default_factory=list)  # worst first: module, sqnr_db, agreement

    def to_dict(self) -> dict:
        return {
            "scheme": self.scheme,
            "observer": self.observer,
            "calibration": self.calibration,
            "int8_layers": len(self.int8_layers),
            "float_layers": self.float_layers,
            "most_sensitive": self.sensitive,
        }

    def table(self):
        from rich.table import Table

        if self.scheme == "int8":
            t = Table(title=f"Quantisation (int8, observer {self.observer})", caption=f"calibrated on {self.calibration}")
        else:  # weights only: per-channel absmax, no activation ranges, no observer
            t = Table(title=f"Quantisation ({self.scheme})", caption=f"calibration data: {self.calibration}")
        t.add_column("", style="bold")
        t.add_column("")
        t.add_row("layers in int8", str(len(self.int8_layers)))
        t.add_row("layers in float", ", ".join(self.float_layers) or "none")
        if self.sensitive:
            worst = "\n".join(f"{s['module']}  {s['sqnr_db']:.1f} dB" for s in self.sensitive)
            t.add_row("most sensitive (output SQNR with only that layer in int8)", worst)
        return t


def summarize(qmodel: QuantizedModel, top: int = 5) -> QuantSummary:
    plan = qmodel.plan
    name = plan.module_of
    sensitive = []
    if qmodel.sensitivity is not None:
        sensitive = [{"module": s.module or s.node, "sqnr_db": round(s.sqnr_db, 2), "agreement": round(s.agreement, 2)}
                     for s in qmodel.sensitivity.worst(top)]
    return QuantSummary(
        scheme=plan.recipe.scheme,
        observer=plan.recipe.observer,
        calibration=qmodel.calibration,
        int8_layers=[name(n) or n for n in plan.weights],
        float_layers=sorted({name(n) or n for n in plan.float_nodes}),
        sensitive=sensitive,
    )
