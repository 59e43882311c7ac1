"""Every script in examples/ runs end to end (each is one user story).

They share one output folder, as a user running them in turn would: the digits model that
classify_photos.py trains is kept there, and digits_int8.py reuses it instead of training again.
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory):
    return tmp_path_factory.mktemp("examples")


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, shared_out):
    start = time.time()
    proc = subprocess.run([sys.executable, str(script), str(shared_out / "out")], capture_output=True, text=True, cwd=shared_out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [p for p in (shared_out / "out").glob("*.onnx") if p.stat().st_mtime >= start - 1], "no .onnx written by this run"
