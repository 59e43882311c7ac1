"""Every registered model converts to ONNX and passes fp32 parity on real photos.

Parametrised over the registry (tests/zoo.py), so a model added later is tested
automatically; the largest are marked slow.
"""

import pytest
from zoo import registry_params, zoo_model

import edge_sdk


@pytest.mark.parametrize("name", registry_params())
def test_model_converts_to_onnx_with_fp32_parity(name, tmp_path):
    model, graph = zoo_model(name)
    artifact = edge_sdk.convert(graph, target="onnx", out=tmp_path)
    report = edge_sdk.check_parity(model, artifact, count=4)
    assert report.passed, report.to_json()
    assert report.outputs[0].min_cosine > 0.99999
