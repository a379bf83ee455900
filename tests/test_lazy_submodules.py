"""``groupnorm.export`` and ``groupnorm.testing`` work after a plain ``import groupnorm`` without being imported by it.

Each check runs in a fresh interpreter: in this one, other tests have long since imported both submodules.
"""

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_groupnorm_does_not_load_the_lazy_submodules():
    out = _run(
        """
        import sys
        import groupnorm
        print(sorted(m for m in ("groupnorm.export", "groupnorm.testing") if m in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_lazy_submodules_resolve_as_attributes():
    out = _run(
        """
        import sys
        import groupnorm
        print(groupnorm.export.to_onnx.__name__, groupnorm.testing.run_conformance.__name__)
        print("export" in dir(groupnorm), "testing" in dir(groupnorm), "groupnorm.export" in sys.modules)
        try:
            groupnorm.no_such_name
        except AttributeError as e:
            print(e)
        """
    )
    assert out.splitlines() == [
        "to_onnx run_conformance",
        "True True True",
        "module 'groupnorm' has no attribute 'no_such_name'",
    ]
