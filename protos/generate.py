"""Compile protos/stamen/v1/*.proto with betterproto2 (async grpclib client and server).

`make protos` writes into shared/stamen/proto/; tests/unit/test_protos_current.py
generates into a temporary folder and fails when the committed code differs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
OPTIONS = "client_generation=async,server_generation=async"


def generate(out_dir: Path) -> None:
    """Replace out_dir's contents with freshly generated code."""
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.glob("stamen/v1/*.proto"))
    env = dict(os.environ)
    # protoc finds the betterproto2 plugin on PATH, next to this interpreter.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}",
                f"--python_betterproto2_out={tmp}",
                f"--python_betterproto2_opt={OPTIONS}",
                *sources,
            ],
            check=True, cwd=PROTO_ROOT, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(tmp, out_dir)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT.parent / "shared/stamen/proto")
