"""adb for real: Debian's adb client and server talk to tests/local_adbd.py, a small device-side adbd on 127.0.0.1
whose commands run under sh on this machine; edge-sdk's AdbRunner pushes, runs and pulls through them as with a
phone. Only TFLite's benchmark_model is a stand-in (a script printing its log, whose format is tested here too)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from local_adbd import AdbServer, start_adbd
from local_sshd import free_port

from edge_sdk.devices import (
    DeviceError,
    DeviceLoginError,
    DeviceSetupError,
    DeviceTimeoutError,
    DeviceUnreachableError,
    connect,
    parse_benchmark_model,
)
from edge_sdk.devices.transport import ADBTransport

# --- benchmark_model's log, as TFLite prints it --------------------------------------------------------
# The lines follow tensorflow/lite/tools/benchmark/benchmark_model.cc (BenchmarkModel::Run: "Initialized session
# in", "Running benchmark for at least ..."; BenchmarkLoggingListener::OnBenchmarkEnd: "Inference timings in us",
# "Memory footprint delta ...", "Overall peak memory footprint ...", "Memory status at the end of exeution" [sic])
# and the Stat printer of tensorflow/core/util/stats_calculator.h ("count= first= curr= min= max= avg= std=",
# newer builds add "p5= median= p95="); flags are echoed by LogParams. Values are those of a mid-range arm64
# phone running a 1.7 MB MobileNetV2 with XNNPACK on 2 threads.
BENCHMARK_MODEL_LOG = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [50]
INFO: Min runs duration (seconds): [0]
INFO: Max runs duration (seconds): [600]
INFO: Num threads: [2]
INFO: Min warmup runs: [5]
INFO: Min warmup runs duration (seconds): [0]
INFO: Graph: [/data/local/tmp/edge-sdk.Ab12Cd/mobilenet_v2_035.tflite]
INFO: Use xnnpack: [1]
INFO: Report the peak memory footprint: [1]
INFO: Loaded model /data/local/tmp/edge-sdk.Ab12Cd/mobilenet_v2_035.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 1.68307
INFO: Initialized session in 38.517ms.
INFO: Running benchmark for at least 5 iterations and at least 0 seconds but terminate if exceeding 600 seconds.
INFO: count=5 first=9876 curr=4512 min=4498 max=9876 avg=5601.2 std=2139 p5=4498 median=4530 p95=9876

INFO: Running benchmark for at least 50 iterations and at least 0 seconds but terminate if exceeding 600 seconds.
INFO: count=50 first=4520 curr=4471 min=4402 max=5986 avg=4612.38 std=287 p5=4420 median=4533 p95=5210

INFO: Inference timings in us: Init: 38517, First inference: 9876, Warmup (avg): 5601.2, Inference (avg): 4612.38
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the \
actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=7.14453 overall=14.2773
INFO: Overall peak memory footprint (MB) via periodic monitoring: 19.9883
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 21 MB
INFO: + RssAnnon           : 9 MB
INFO: + RssFile + RssShmem : 12 MB
"""

# An older build (TF 2.4 era): no log prefix, no percentiles, e-notation, "Peak memory footprint".
BENCHMARK_MODEL_LOG_OLD = """\
Loaded model /data/local/tmp/yolo.tflite
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Peak memory footprint (MB): init=4.92969 overall=138.809
"""


def test_benchmark_model_log_parses_into_bench_numbers():
    p = parse_benchmark_model(BENCHMARK_MODEL_LOG)
    assert p["runs"] == 50 and p["xnnpack"] is True
    assert p["latency_ms"] == pytest.approx({"min": 4.402, "p5": 4.42, "p50": 4.533, "p95": 5.21, "max": 5.986,
                                             "std": 0.287, "mean": 4.61238, "p90": None, "p99": None})
    assert p["init_s"] == pytest.approx(0.038517) and p["first_run_ms"] == pytest.approx(9.876)
    assert p["peak_mb"] == pytest.approx(19.9883)
    old = parse_benchmark_model(BENCHMARK_MODEL_LOG_OLD)
    assert old["runs"] == 50 and old["latency_ms"]["mean"] == pytest.approx(2950.34) and old["latency_ms"]["p50"] is None
    assert old["peak_mb"] == pytest.approx(138.809) and old["xnnpack"] is False
    with pytest.raises(ValueError, match="did not finish"):
        parse_benchmark_model(BENCHMARK_MODEL_LOG.split("INFO: Inference timings")[0])


# --- a phone on 127.0.0.1, reached through Debian's adb server on a private port --------------------------
PIXEL_7 = {"ro.product.manufacturer": "Google", "ro.product.model": "Pixel 7", "ro.soc.manufacturer": "Google",
           "ro.soc.model": "Tensor G2", "ro.build.version.release": "14", "ro.build.version.sdk": "34",
           "ro.product.cpu.abi": "arm64-v8a"}


@pytest.fixture(scope="module")
def adb_server(tmp_path_factory):
    """The server, and edge-sdk's adb calls pointed at it as a user's would be, with ADB_SERVER_SOCKET."""
    if shutil.which("adb") is None:
        pytest.skip("Debian's adb is not installed (apt-get install -y adb; .ci/run does)")
    server = AdbServer(tmp_path_factory.mktemp("adb-server"), free_port())
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ANDROID_ADB_SERVER_PORT", raising=False)
        mp.delenv("ANDROID_SERIAL", raising=False)
        mp.setenv("ADB_SERVER_SOCKET", server.env["ADB_SERVER_SOCKET"])
        yield server
    server.adb("kill-server")


def _phone(server, workdir: Path, **options):
    daemon = start_adbd(workdir, PIXEL_7, **options)
    res = server.adb("connect", daemon.serial)
    assert res.stdout.startswith(f"connected to {daemon.serial}"), res.stdout + res.stderr
    return daemon


@pytest.fixture(scope="module")
def phone(adb_server, tmp_path_factory):
    """Android 7+: shell protocol v2 (separate stderr, real exit codes)."""
    daemon = _phone(adb_server, tmp_path_factory.mktemp("phone"))
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def old_phone(adb_server, tmp_path_factory):
    """Before Android 7: no shell_v2, so `shell:CMD` on a pty (\\r\\n, stderr mixed in, adb always exits 0)."""
    daemon = _phone(adb_server, tmp_path_factory.mktemp("old-phone"), features="")
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small classifier (conv, pool, linear on 3x32x32) converted to .tflite: (path, torch module)."""
    import torch

    import edge_sdk

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    artifact = edge_sdk.convert(model, target="tflite", out=tmp_path_factory.mktemp("tiny"), input_shape=(1, 3, 32, 32))
    return artifact.path, model


@pytest.fixture
def device_tmp(tmp_path):
    folder = tmp_path / "device-tmp"  # the ?tmp= folder "on the phone" (this machine's file system)
    folder.mkdir()
    return folder


def _benchmark_model(tmp_path: Path, log: str = BENCHMARK_MODEL_LOG, before: str = "", status: int = 0, record: str = "") -> Path:
    """A stand-in for TFLite's benchmark_model: records its arguments and each graph's sha256 (in `record`, a folder
    as the device sees it; default tmp_path), then prints `log`."""
    record = record or str(tmp_path)
    tool = tmp_path / "benchmark_model"
    tool.write_text(f"#!/bin/sh\necho \"$@\" > {record}/tool-args\n"
                    f"for a in \"$@\"; do case \"$a\" in --graph=*) sha256sum \"${{a#--graph=}}\" >> {record}/graphs ;; esac; done\n"
                    f"{before}\ncat <<'EOF'\n{log}EOF\nexit {status}\n")
    tool.chmod(0o755)
    return tool


def _android_root(root: Path) -> Path:
    """A phone-like tree to chroot into: this machine's sh and the coreutils the runner calls in /system/bin (and
    /bin -> /system/bin, as on Android 10+), their libraries, /data/local/tmp, /dev/null; no /proc, /sys or Python."""
    (root / "system" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("system/bin")
    for tool in ("sh", "mktemp", "df", "rm", "chmod", "cat", "nproc", "uname", "sort", "tr", "sleep", "touch", "sha256sum"):
        binary = Path(shutil.which(tool)).resolve()
        shutil.copy(binary, root / "system" / "bin" / tool)
        for lib in re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout):
            (root / lib.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(lib, root / lib.lstrip("/"))
    (root / "data" / "local" / "tmp").mkdir(parents=True)
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(root / "dev" / "null", 0o666)
    return root


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("which", ["phone", "old_phone"])
def test_benchmark_model_over_real_adb(which, request, adb_server, tiny, device_tmp, tmp_path):
    daemon = request.getfixturevalue(which)
    big = tmp_path / "big.tflite"  # 1.5 MB: many sync DATA chunks and WRTE packets, each waiting for its OKAY
    big.write_bytes(os.urandom(1_500_000))
    runner = connect(f"adb://{daemon.serial}?tmp={device_tmp}", benchmark_binary=_benchmark_model(tmp_path))
    d = runner.describe()
    assert (d["board"], d["cpu"], d["os"]) == ("Google Pixel 7", "Google Tensor G2", "Android 14 (API 34)")
    assert d["cores"] == len(os.sched_getaffinity(0)) and d["arch"] == os.uname().machine and d["python"] is None
    small, big_report = runner.bench([tiny[0], big], runs=50, warmup=5, threads=2)
    args = (tmp_path / "tool-args").read_text().split()
    assert {"--num_threads=2", "--use_xnnpack=true", "--num_runs=50", "--warmup_runs=5"} <= set(args)
    pushed = dict(reversed(line.split()) for line in (tmp_path / "graphs").read_text().splitlines())
    assert sorted(pushed.values()) == sorted([_sha256(tiny[0]), _sha256(big)])  # the files arrived intact
    assert all(Path(p).parent.parent == device_tmp for p in pushed)
    assert small.tool == "benchmark_model" and small.runs == 50 and small.latency_ms["p50"] == pytest.approx(4.533)
    assert small.load_seconds == pytest.approx(0.038517) and big_report.peak_rss_mb == pytest.approx(19.9883)
    assert small.device["board"] == "Google Pixel 7" and small.target == f"adb://{daemon.serial}"
    assert any("parity was not run" in n for n in small.notes)
    assert list(device_tmp.iterdir()) == []  # the work folder is gone
    with pytest.raises(DeviceSetupError, match="parity was not run"):
        runner.verify(tiny[0], tiny[1])


def test_sustained_mode_runs_benchmark_model_once_a_window(phone, tiny, device_tmp, tmp_path):
    runner = connect(f"adb://{phone.serial}?tmp={device_tmp}", benchmark_binary=_benchmark_model(tmp_path))
    (report,) = runner.bench([tiny[0]], sustained_s=1.0, window_s=0.25, warmup=5)
    last_call = (tmp_path / "tool-args").read_text().split()
    assert {"--num_runs=1", "--min_secs=0.25", "--max_secs=0.25", "--warmup_runs=0"} <= set(last_call)
    assert len(report.timeline) >= 2 and report.runs == 50 * len(report.timeline)  # the log's 50 runs, per window
    assert report.drift_pct == pytest.approx(0.0) and report.latency_ms["p50"] == pytest.approx(4.533)
    assert list(device_tmp.iterdir()) == []


@pytest.mark.parametrize("which", ["phone", "old_phone"])
def test_device_python_runs_the_agent_and_parity(which, request, adb_server, tiny, device_tmp):
    phone = request.getfixturevalue(which)
    runner = connect(f"adb://{phone.serial}?tmp={device_tmp}&python={sys.executable}")
    (report,) = runner.bench([tiny[0]], runs=5, warmup=1, threads=1)
    assert report.tool == "edge-sdk" and report.runs == 5 and report.target == f"adb://{phone.serial}"
    assert report.device["runtimes"]["ai-edge-litert"] and report.latency_ms["p50"] > 0
    assert report.device["board"] == "Google Pixel 7" and report.device["os"] == "Android 14 (API 34)"  # getprop's, not Linux's
    parity = runner.verify(tiny[0], tiny[1], count=2)
    assert parity.passed and parity.samples == 2 and f"on adb://{phone.serial}" in parity.runtime_version
    assert list(device_tmp.iterdir()) == []


def test_errors_name_the_cause(adb_server, phone, tiny, device_tmp, tmp_path):
    tool = _benchmark_model(tmp_path)
    with pytest.raises(DeviceUnreachableError, match="device '127.0.0.1:[0-9]+' not found") as info:
        connect(f"adb://127.0.0.1:{free_port()}", benchmark_binary=tool).bench([tiny[0]])
    assert "adb devices" in info.value.hint and "adb connect 127.0.0.1:" in info.value.hint
    locked = start_adbd(tmp_path / "locked", PIXEL_7, auth=True)  # asks for a key and never accepts one
    try:
        assert "failed to authenticate" in adb_server.adb("connect", locked.serial).stdout
        with pytest.raises(DeviceLoginError, match="error: device unauthorized") as info:
            connect(f"adb://{locked.serial}", benchmark_binary=tool).describe()
        assert "Allow USB debugging" in info.value.hint
    finally:
        locked.stop()
    with pytest.raises(DeviceSetupError, match="cannot make a work folder in /nonexistent.*No such file or directory"):
        connect(f"adb://{phone.serial}?tmp=/nonexistent", benchmark_binary=tool).bench([tiny[0]])
    broken = _benchmark_model(tmp_path, log="ERROR: Could not open 'x'.\n", status=1)
    with pytest.raises(DeviceError, match=r"benchmark_model failed on .*\(exit 1\).*did not finish") as info:
        connect(f"adb://{phone.serial}?tmp={device_tmp}", benchmark_binary=broken).bench([tiny[0]])
    assert "Could not open" in info.value.hint and list(device_tmp.iterdir()) == []
    with pytest.raises(DeviceSetupError, match="no Python at '/nonexistent/python3'"):
        connect(f"adb://{phone.serial}?python=/nonexistent/python3&tmp={device_tmp}").describe()
    with pytest.raises(DeviceError, match="pushing .* failed: adb: error: failed to copy .*remote couldn't create file: Not a directory"):
        ADBTransport(phone.serial).push([tiny[0]], str(tiny[0]), 60)  # into a file, as if it were a folder
    start = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match="`sleep 30` on adb://.* did not finish within 1 s"):
        ADBTransport(phone.serial).run(["sleep", "30"], 1)
    assert time.monotonic() - start < 10
    with pytest.raises(DeviceSetupError, match="nothing to benchmark with"):
        connect(f"adb://{phone.serial}").bench([tiny[0]])


def test_old_phone_setup_errors_keep_their_reason(old_phone, device_tmp):
    """Before Android 7 the device's error text comes on stdout (a pty), not stderr: the messages still give it."""
    with pytest.raises(DeviceSetupError, match="no Python at '/nonexistent/python3'"):
        connect(f"adb://{old_phone.serial}?python=/nonexistent/python3&tmp={device_tmp}").describe()
    with pytest.raises(DeviceSetupError, match="cannot make a work folder under /nonexistent: .*No such file or directory"):
        connect(f"adb://{old_phone.serial}?python={sys.executable}&tmp=/nonexistent").describe()


def test_phone_gone_mid_run_ends_with_a_message_naming_the_command(adb_server, tiny, device_tmp, tmp_path):
    """The daemon is killed while benchmark_model runs: the run ends at once and says what was running."""
    daemon = _phone(adb_server, tmp_path / "doomed")
    tool = _benchmark_model(tmp_path, before=f"touch {tmp_path}/started; sleep 60")
    outcome = {}

    def run():
        try:
            connect(f"adb://{daemon.serial}?tmp={device_tmp}", benchmark_binary=tool).bench([tiny[0]])
        except DeviceError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "started").exists(), "benchmark_model never started"
    finally:
        killed_at = time.monotonic()
        daemon.stop()  # SIGKILL, the commands it started too: as if the phone were unplugged
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - killed_at < 10
    error = outcome["error"]
    assert isinstance(error, DeviceUnreachableError), error
    assert "connection ended while running" in error.message and "benchmark_model --graph=" in error.message, error.message
    assert "check `adb devices`" in error.hint and "may be left" in error.hint and "device offline" in error.hint, error.hint
    with pytest.raises(DeviceUnreachableError, match="error: device offline") as info:
        connect(f"adb://{daemon.serial}").describe()
    assert "reconnect" in info.value.hint


def test_a_phone_like_root_with_the_runners_defaults(adb_server, tiny, tmp_path):
    """Commands chrooted into an Android-like tree: no ?tmp=, so the work folder is made in /data/local/tmp as on a
    phone; /system/bin/sh; no /proc, so `df` fails and the free-space check is skipped."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    root = _android_root(tmp_path / "root")
    daemon = _phone(adb_server, tmp_path / "chrooted", root_dir=root)
    try:
        runner = connect(f"adb://{daemon.serial}", benchmark_binary=_benchmark_model(tmp_path, record="/data/local"))
        (report,) = runner.bench([tiny[0]], runs=50, warmup=5, threads=1)
        digest, graph = (root / "data" / "local" / "graphs").read_text().split()
        assert digest == _sha256(tiny[0]) and re.fullmatch(rf"/data/local/tmp/edge-sdk\.\w+/{tiny[0].name}", graph)
        assert report.runs == 50 and report.device["board"] == "Google Pixel 7" and report.device["temperature_c"] is None
        assert list((root / "data" / "local" / "tmp").iterdir()) == []
    finally:
        daemon.stop()
