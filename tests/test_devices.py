"""Device runners: the benchmark protocol's statistics, target strings, the local runner, and a real OpenSSH
server on 127.0.0.1 whose "device" is a torch-free venv with the `[runtime]` wheel (adb: tests/test_adb.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np
import pytest

from edge_sdk.cli import main
from edge_sdk.devices import (
    DeviceError,
    DeviceLoginError,
    DeviceSetupError,
    DeviceUnreachableError,
    connect,
    parse_target,
)
from edge_sdk.verify.bench import BenchReport, benchmark, latency_stats, median_ci, throttle_warnings


# --- the protocol's statistics ------------------------------------------------------------------------
def test_median_ci_is_the_exact_order_statistic_interval():
    assert median_ci(np.arange(5.0)) is None  # 2 / 2**5 > 5 %: no 95 % interval from 5 samples
    assert median_ci(np.arange(6.0)) == [0.0, 5.0]  # x(1), x(6): coverage 1 - 2/64
    # n = 100: the textbook ranks are 40 and 61 (coverage 96.5 %)
    assert median_ci(np.arange(1.0, 101.0)) == [40.0, 61.0]
    rng = np.random.default_rng(0)
    big = rng.lognormal(size=5000)  # normal approximation; must still bracket the sample median tightly
    lo, hi = median_ci(big)
    assert lo < np.median(big) < hi and hi - lo < 0.1
    stats = latency_stats([3.0, 1.0, 2.0, 4.0])
    assert stats["min"] == 1.0 and stats["p50"] == 2.5 and stats["max"] == 4.0 and stats["mean"] == 2.5


def test_throttling_is_detected_from_state_snapshots():
    calm = {"governor": "performance", "throttle_events": 3, "pi_throttled": 0, "freq_mhz": [1800.0], "max_freq_mhz": [1800.0]}
    assert throttle_warnings(calm, calm) == []
    assert "2 thermal throttle events" in throttle_warnings(calm, calm | {"throttle_events": 5})[0]
    assert "get_throttled=0x20002" in throttle_warnings(calm, calm | {"pi_throttled": 0x20002})[0]
    assert "600 of 1800 MHz" in throttle_warnings(calm, calm | {"freq_mhz": [600.0]})[0]
    assert throttle_warnings(calm | {"governor": "ondemand"}, calm | {"governor": "ondemand", "freq_mhz": [600.0]}) == []


def test_time_budget_sustained_windows_and_json_round_trip(small_tflite):
    report = benchmark(small_tflite, duration_s=0.3, warmup=1, threads=1)
    assert report.runs >= 6 and report.seconds >= 0.3 and report.median_ci_ms is not None
    assert report.median_ci_ms[0] <= report.latency_ms["p50"] <= report.median_ci_ms[1]
    assert len(report.samples_ms) == report.runs and report.first_run_ms > 0
    assert report.device["runtimes"]["ai-edge-litert"] and report.state_before.keys() == report.state_after.keys()
    sustained = benchmark(small_tflite, sustained_s=0.6, window_s=0.2, warmup=1, threads=1)
    assert len(sustained.timeline) >= 3 and sustained.drift_pct is not None
    assert sum(w["runs"] for w in sustained.timeline) == sustained.runs
    again = BenchReport.from_dict(json.loads(sustained.to_json()))
    assert again.timeline == sustained.timeline and again.latency_ms["p99"] == round(sustained.latency_ms["p99"], 4)


def test_cooldown_waits_for_the_sensor(small_tflite, monkeypatch):
    from edge_sdk.verify import bench

    readings = iter([71.0, 66.0, 59.0])
    monkeypatch.setattr(bench, "temperature_c", lambda: next(readings, 59.0))
    monkeypatch.setattr(bench, "COOLDOWN_POLL_S", 0.01)
    report = benchmark(small_tflite, runs=3, warmup=0, cooldown_c=60.0)
    assert 0 < report.cooldown_seconds < 5 and not report.warnings
    monkeypatch.setattr(bench, "temperature_c", lambda: None)
    assert "cool-down skipped" in benchmark(small_tflite, runs=3, warmup=0, cooldown_c=60.0).notes[0]


# --- targets and the local runner ------------------------------------------------------------------------
def test_targets_parse_and_bad_ones_say_what_to_write():
    t = parse_target("ssh://pi@raspberrypi.local:2222?python=~/venv/bin/python")
    assert (t.kind, t.user, t.host, t.port, t.options) == ("ssh", "pi", "raspberrypi.local", 2222, {"python": "~/venv/bin/python"})
    assert parse_target("adb://R58M123ABC").serial == "R58M123ABC" and parse_target("local").kind == "local"
    for bad, message in [("pi@raspberrypi", "unknown device target"), ("ssh://", "no host"), ("ssh://pi@h:notaport", "bad port"),
                         ("adb://", "no serial"), ("ssh://h?pyhton=x", "unknown target option")]:
        with pytest.raises(DeviceError, match=message) as info:
            parse_target(bad)
        assert info.value.hint


def test_local_runner_describes_benchmarks_and_verifies(small_tflite):
    runner = connect("local")
    d = runner.describe()
    assert d["cores"] >= 1 and d["arch"] and d["python"] and "state" in d
    (report,) = runner.bench([small_tflite], runs=5, warmup=1, threads=1)
    assert report.runs == 5 and report.target == "local"


@pytest.fixture(scope="module")
def small_tflite(tmp_path_factory):
    import edge_sdk

    out = tmp_path_factory.mktemp("tflite_small")
    return edge_sdk.convert(_small_model(), target="tflite", out=out).path


def _small_model():
    import edge_sdk

    return edge_sdk.create_model("mobilenet_v2_035", img_size=96)


def test_missing_space_and_packages_are_reported_before_pushing(small_tflite):
    from edge_sdk.devices.runner import AgentRunner
    from edge_sdk.devices.transport import SSHTransport

    runner = AgentRunner(SSHTransport("pi", "raspberrypi.local"), python="python3")  # checks only, nothing connects
    probe = {"python": [3, 11, 2], "executable": "/usr/bin/python3", "dir": "/tmp/edge-sdk-x", "free_bytes": 1 << 20,
             "packages": {"numpy": "2.2.0", "onnxruntime": None, "ai-edge-litert": None, "tflite-runtime": None}}
    with pytest.raises(DeviceSetupError, match="lacks ai-edge-litert") as info:
        runner._check(probe, [small_tflite])
    assert "/usr/bin/python3 -m pip install ai-edge-litert" in info.value.hint
    with pytest.raises(DeviceSetupError, match="MB free"):
        runner._check(probe | {"packages": probe["packages"] | {"tflite-runtime": "2.14.0"}}, [small_tflite])
    with pytest.raises(DeviceSetupError, match="too old"):
        runner._check(probe | {"python": [3, 7, 3]}, [])


# --- a real sshd on 127.0.0.1; the device is a torch-free venv with the `[runtime]` wheel ------------------
@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    from local_sshd import start_sshd, why_not

    reason = why_not()
    if reason:
        pytest.skip(reason)
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_onnx_file(small_tflite):
    import edge_sdk

    return edge_sdk.convert(_small_model(), target="onnx", out=small_tflite.parent).path


def test_ssh_bench_and_verify_on_a_torch_free_device(sshd, runtime_venv, small_tflite, small_onnx_file, tmp_path, capsys):
    device_tmp = tmp_path / "device-tmp"
    device_tmp.mkdir()
    target = f"ssh://root@127.0.0.1:{sshd.port}?python={runtime_venv}/bin/python&tmp={device_tmp}"
    common = ["--device", target, "--ssh-config", str(sshd.ssh_config)]
    code = main(["bench", str(small_tflite), str(small_onnx_file), "--runs", "20", "--warmup", "2", "--threads", "1",
                 "--compare", "--plot", str(tmp_path / "cmp.png"), "--json", str(tmp_path / "bench.json"), *common])
    err = capsys.readouterr().err
    assert code == 0, err
    reports = json.loads((tmp_path / "bench.json").read_text())["reports"]
    assert [r["backend"] for r in reports] == ["tflite", "onnxruntime"] and all(r["runs"] == 20 for r in reports)
    assert all(r["target"] == f"ssh://root@127.0.0.1:{sshd.port}" for r in reports)
    assert reports[0]["device"]["runtimes"]["ai-edge-litert"] and reports[0]["median_ci_ms"] is not None
    assert "Benchmark comparison (2 files)" in err and (tmp_path / "cmp.png").stat().st_size > 5000
    factory = tmp_path / "small.py"
    factory.write_text("import edge_sdk\n\ndef build():\n    return edge_sdk.create_model('mobilenet_v2_035', img_size=96)\n")
    code = main(["verify", str(small_tflite), "--model", f"{factory}:build", "--count", "3", "--json", *common])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"] and report["samples"] == 3 and f"on ssh://root@127.0.0.1:{sshd.port}" in report["runtime_version"]
    describe = connect(target, ssh_config=sshd.ssh_config).describe()
    assert describe["agent"].endswith("edge-sdk-agent.pyz/edge_sdk")  # the pushed code ran, not the venv's copy
    assert list(device_tmp.iterdir()) == []  # every work folder was removed


def test_ssh_failures_end_with_a_clear_message_and_no_files_left(sshd, runtime_venv, small_tflite, tmp_path):
    from local_sshd import free_port

    device_tmp = tmp_path / "device-tmp"
    device_tmp.mkdir()
    with pytest.raises(DeviceUnreachableError, match="Connection refused") as info:
        connect(f"ssh://root@127.0.0.1:{free_port()}", ssh_config=sshd.ssh_config).describe()
    assert "is sshd running" in info.value.hint
    wrong_key = tmp_path / "ssh_config"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    wrong_key.write_text(sshd.ssh_config.read_text().replace(str(sshd.workdir / "id"), str(tmp_path / "other")))
    with pytest.raises(DeviceLoginError, match="Permission denied") as info:
        connect(f"ssh://root@127.0.0.1:{sshd.port}", ssh_config=wrong_key).describe()
    assert "ssh-copy-id" in info.value.hint
    no_numpy = f"ssh://root@127.0.0.1:{sshd.port}?python=/usr/bin/python3&tmp={device_tmp}"
    with pytest.raises(DeviceSetupError, match="lacks numpy, ai-edge-litert") as info:
        connect(no_numpy, ssh_config=sshd.ssh_config).bench([small_tflite])
    assert "-m pip install numpy ai-edge-litert" in info.value.hint
    hangs = f"ssh://root@127.0.0.1:{sshd.port}?python={runtime_venv}/bin/python&tmp={device_tmp}"
    start = time.monotonic()
    with pytest.raises(DeviceError, match="did not finish within 3 s"):
        connect(hangs, ssh_config=sshd.ssh_config, timeout_s=3).bench([small_tflite], sustained_s=60)
    assert time.monotonic() - start < 30
    assert list(device_tmp.iterdir()) == []


def test_ssh_server_killed_mid_run_ends_with_a_message(runtime_venv, small_tflite, tmp_path):
    """The server dies while the device benchmarks: the run ends promptly, says so, and names what may be left."""
    import threading

    from local_sshd import start_sshd, why_not

    reason = why_not()
    if reason:
        pytest.skip(reason)
    server = start_sshd(tmp_path / "sshd")
    device_tmp = tmp_path / "device-tmp"
    device_tmp.mkdir()
    target = f"ssh://root@127.0.0.1:{server.port}?python={runtime_venv}/bin/python&tmp={device_tmp}"
    outcome = {}

    def run():
        try:
            connect(target, ssh_config=server.ssh_config, timeout_s=120).bench([small_tflite], sustained_s=30)
        except DeviceError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not any(device_tmp.glob("*/" + small_tflite.name)) and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until the artifact is on the device and the benchmark is starting
    assert any(device_tmp.glob("*/" + small_tflite.name)), "the run never reached the device"
    time.sleep(2)
    killed_at = time.monotonic()
    children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
    for pid in [server.process.pid, *map(int, children)]:  # the listener and every session it forked
        os.kill(int(pid), 9)
    server.process.wait()
    thread.join(60)
    assert not thread.is_alive(), "the runner did not notice the server was gone"
    assert time.monotonic() - killed_at < 30
    error = outcome["error"]
    assert "127.0.0.1" in error.message and "failed" in error.message and "went away" in error.hint, (error.message, error.hint)
    assert "may be left" in error.hint and "remove it by hand" in error.hint  # cleanup could not reach the device
