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
           "--shapes", "32x2048x7x7:32", "--json", str(out), "--md", str(out.with_suffix(".md"))]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


def test_markdown_page_says_what_holds(report, tmp_path_factory):
    page = next(tmp_path_factory.getbasetemp().glob("compile*/report.md")).read_text()
    streaming = [r for r in report if r["kernel"] != "bwd_param_kernel"]
    assert f"at 16 bytes: {len(streaming)} of {len(streaming)} kernel records" in page
    assert "Register spills: 0 record(s)." in page
    assert page.count("\n| 32x2048x7x7 |") == len(report)


def test_one_record_per_call_and_kernel(report):
    keys = {(r["layout"], r["mode"], r["kernel"]) for r in report}
    expected = {("nchw", "fwd", "fwd_onepass_flat_kernel"), ("channels_last", "fwd", "fwd_onepass_kernel")}
    expected |= {("nchw", "bwd", "bwd_onepass_flat_kernel"), ("channels_last", "bwd", "bwd_onepass_kernel")}
    expected |= {(layout, "bwd", "bwd_param_kernel") for layout in ("nchw", "channels_last")}
    assert keys == expected
    for r in report:
        assert r["shape"] == [32, 2048, 7, 7] and r["dtype"] == "bfloat16"
        assert {"launches", "ld_global_bytes", "st_global_bytes", "registers", "spills"} <= set(r)
        assert r["launches"] == (1 if r["mode"] == "fwd" else 2)
        assert r["registers"] > 0 and r["spills"] == 0


def test_every_streaming_kernel_moves_16_bytes_per_access(report):
    # channels_last: 64 channels per group, channel stride 1, C divisible by 16; NCHW: a group's 64 x 49
    # elements as one run, forward and backward. Triton's divisibility specialization makes the x and dy loads
    # and the y and dx stores 16-byte vectors (a [positions, channels] tile of 49 rows could not).
    for r in report:
        if r["kernel"] != "bwd_param_kernel":
            assert r["ld_global_bytes"] == 16 and r["st_global_bytes"] == 16, r
            assert r["ld_global_widths"]["16"] > 0
