import json

import edge_sdk
from edge_sdk.verify import benchmark


def test_benchmark_reports_percentiles_and_host(small_onnx, tmp_path):
    report = benchmark(small_onnx, runs=20, warmup=2, threads=1)
    lat = report.latency_ms
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert lat["min"] <= lat["mean"] and report.runs == 20 and report.threads == 1
    assert report.throughput_per_s > 0 and report.size_bytes == small_onnx.size_bytes
    assert report.device["arch"] and report.device["cpu"] and report.runtime_version
    assert report.input_shapes == [[1, 3, 96, 96]]  # dynamic batch benchmarked at 1
    saved = json.loads(report.to_json(tmp_path / "b.json") and (tmp_path / "b.json").read_text())
    assert saved["latency_ms"]["p99"] == round(lat["p99"], 4)


def test_benchmark_rejects_nonsense_counts(small_onnx):
    import pytest

    from edge_sdk.errors import InputError

    with pytest.raises(InputError, match="runs must be >= 1"):
        edge_sdk.benchmark(small_onnx, runs=0)
