"""`python -m build` makes a wheel and an sdist that carry the package, its metadata and its license."""

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the machine may be offline; setuptools and wheel come from the dev extra.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if "No module named" in result.stderr and result.returncode != 0:
        pytest.skip(f"build backend missing: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_wheel_has_package_metadata_and_entry_point(dist):
    (wheel,) = dist.glob("groupnorm-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "groupnorm/ops/op.py" in names and "groupnorm/__main__.py" in names
    assert any(n.startswith("groupnorm/ops/cpu/csrc/") and n.endswith(".c") for n in names), "kernel source"
    assert "Requires-Python: >=3.10" in metadata
    for extra in ("dev", "vision", "onnx", "repro"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "groupnorm = groupnorm.cli:main" in entry_points


def test_sdist_has_sources_and_license(dist):
    (sdist,) = dist.glob("groupnorm-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
    assert any(n.endswith("/LICENSE") for n in names)
    assert any(n.endswith("/src/groupnorm/functional.py") for n in names)
