"""The zip the host pushes to a device: edge-sdk's torch-free code plus the agent's entry point.

Why push code rather than require `pip install edge-sdk` on the device: the device
then always runs exactly the host's version of the Session layer, the benchmark
protocol and the agent (no skew between a laptop's checkout and a Pi's install),
and the device needs only binary wheels that pip can always get for it (numpy and
an interpreter). The zip holds pure Python (~100 KB) and runs with `python3 agent.pyz`.
"""

from __future__ import annotations

import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

# What the agent imports, by package folder (relative to edge_sdk/): floors 0-2 minus the torch side, plus devices/.
PACKAGES = ("", "runtime", "verify", "devices")
# Modules in those folders that need torch or belong to conversion: never shipped.
EXCLUDED = {"api.py", "graph.py", "cli.py"}

MAIN = "from edge_sdk.devices.agent import main\nraise SystemExit(main())\n"
NAME = "edge-sdk-agent.pyz"
_KEEP: list = []  # the TemporaryDirectory objects: alive until exit, then cleaned up


@lru_cache(maxsize=1)
def agent_bundle() -> Path:
    """Build the zip once per process and return its path (its folder is removed when Python exits)."""
    import edge_sdk

    root = Path(edge_sdk.__file__).resolve().parent
    folder = tempfile.TemporaryDirectory(prefix="edge-sdk-bundle-")
    _KEEP.append(folder)
    out = Path(folder.name) / NAME
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__main__.py", MAIN)
        for package in PACKAGES:
            for path in sorted((root / package).glob("*.py")):
                if path.name not in EXCLUDED:
                    zf.write(path, str(Path("edge_sdk") / package / path.name))
    return out
