"""scripts/triton_compile_check.py --key-shapes: what the launchers launch for a shape, compiled for sm_90 with
Triton's own specialization, reported from the PTX and ptxas (needs Triton's NVIDIA backend, no GPU)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.triton
pytest.importorskip("triton.backends.nvidia.compiler")

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "report.json"
    # A process of its own: the interpreter these tests switch on would refuse to compile.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT / "src")
    cmd = [sys.executable, str(ROOT / "scripts" / "triton_compile_check.py"), "--key-shapes",
           "--shapes", "32x2048x7x7:32", "--json", str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


def test_one_record_per_call_and_kernel(report):
    keys = {(r["layout"], r["mode"], r["kernel"]) for r in report}
    backward = {("bwd", "bwd_onepass_kernel"), ("bwd", "bwd_param_kernel")}
    expected = {("nchw", "fwd", "fwd_onepass_flat_kernel"), ("channels_last", "fwd", "fwd_onepass_kernel")}
    expected |= {(layout, *kernel) for layout in ("nchw", "channels_last") for kernel in backward}
    assert keys == expected
    for r in report:
        assert r["shape"] == [32, 2048, 7, 7] and r["dtype"] == "bfloat16"
        assert {"launches", "ld_global_bytes", "st_global_bytes", "registers", "spills"} <= set(r)
        assert r["launches"] == (1 if r["mode"] == "fwd" else 2)
        assert r["registers"] > 0 and r["spills"] == 0


def test_channels_last_and_the_flat_forward_stream_16_bytes_per_access(report):
    # channels_last: 64 channels per group, channel stride 1, C divisible by 16; NCHW forward: a group's
    # 64 x 49 elements as one run. Triton's divisibility specialization makes the x loads and y stores 16-byte
    # vectors (the NCHW backward's [64 positions, 64 channels] tiles of 49 rows stay narrower).
    for r in report:
        streams = r["layout"] == "channels_last" and r["kernel"] != "bwd_param_kernel"
        if streams or r["kernel"] == "fwd_onepass_flat_kernel":
            assert r["ld_global_bytes"] == 16 and r["st_global_bytes"] == 16, r
            assert r["ld_global_widths"]["16"] > 0
