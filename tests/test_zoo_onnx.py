"""Every registered model converts to ONNX and passes fp32 parity on real photos.

Parametrised over the registry, so a model added later is tested automatically.
The largest models (over LARGE_MACS at their paper resolution) take minutes each on
2 cores and are marked slow: `pytest -m slow` runs them.
"""

import pytest

import edge_sdk
from edge_sdk.models import get_model_card, list_models

LARGE_MACS = 3e9


def _params():
    return [
        pytest.param(name, marks=[pytest.mark.slow] if get_model_card(name).macs > LARGE_MACS else [], id=name)
        for name in list_models()
    ]


@pytest.mark.parametrize("name", _params())
def test_model_converts_to_onnx_with_fp32_parity(name, tmp_path):
    model = edge_sdk.create_model(name)
    artifact = edge_sdk.convert(model, target="onnx", out=tmp_path)
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed, report.to_json()
    assert report.outputs[0].min_cosine > 0.99999
