"""Every ``GROUPNORM_*`` environment variable, in one place: its name, default, parser and meaning.

The package reads these variables only through this module (``tests/test_env.py`` checks that no other module
names one), and the table in ``docs/environment.md`` is :func:`markdown_table`'s output
(``python scripts/env_table.py`` rewrites it). An unset or empty variable means its default; a value the parser refuses
raises an error that names the variable and the value. Variables are read when used, not at import, so a test or
a program may change them between calls (except ``GROUPNORM_IN_MEMORY_LIMIT``, read once when
``groupnorm.repro.data`` is imported).

Example::

    >>> import os
    >>> from groupnorm import env
    >>> env.CPU_WAVE_BYTES.get() == env.CPU_WAVE_BYTES.default or "GROUPNORM_CPU_WAVE_BYTES" in os.environ
    True
    >>> env.CPU_WAVE_BYTES.parse("65536")
    65536
    >>> [v.name for v in env.VARIABLES][:2]
    ['GROUPNORM_CPU_KERNEL', 'GROUPNORM_CPU_CC']
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("must be a non-negative integer") from None
    if value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _switch(raw: str) -> bool:
    """False for 0/false/off/no (any case), True for anything else."""
    return raw.strip().lower() not in ("0", "false", "off", "no")


def _text(raw: str) -> str:
    return raw


def _march(raw: str) -> str:
    """A compiler target name (``native``, ``x86-64-v3``, ``znver4``, ...): one word, so never another flag."""
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", value):
        raise ValueError("must be one -march target name such as native, x86-64-v3 or x86-64")
    return value


@dataclass(frozen=True)
class Variable:
    """One environment variable: ``get()`` is its parsed value, or ``default`` when unset or empty.

    ``default`` may be a function of no arguments (a default that depends on another variable, such as ``$CC``);
    ``default_text`` is how the docs table shows it. ``scope`` is ``"package"`` or ``"tests"`` (read by the test
    suite only).
    """

    name: str
    default: Any
    parse: Callable[[str], Any]
    meaning: str
    default_text: str = ""
    scope: str = "package"

    def get(self) -> Any:
        raw = os.environ.get(self.name, "")
        if raw.strip() == "":
            return self.default() if callable(self.default) else self.default
        try:
            return self.parse(raw)
        except ValueError as e:
            raise ValueError(f"environment variable {self.name} {e}, got {self.name}={raw!r}") from None

    def shown_default(self) -> str:
        """The default as the docs table shows it."""
        return self.default_text or f"`{self.default}`"


CPU_KERNEL = Variable(
    "GROUPNORM_CPU_KERNEL", True, _switch,
    "`0` (or `false`, `off`, `no`) turns the compiled CPU kernels off: the plain-torch implementation "
    "serves CPU calls.",
    default_text="on",
)  # fmt: skip
CPU_CC = Variable(
    "GROUPNORM_CPU_CC", lambda: os.environ.get("CC") or "cc", _text,
    "The C compiler that builds the CPU kernel library.",
    default_text="`$CC`, else `cc`",
)  # fmt: skip
CACHE_DIR = Variable(
    "GROUPNORM_CACHE_DIR", None, _text,
    "The only directory where the CPU kernel library is looked for and built.",
    default_text="`_build/` beside `groupnorm/ops/cpu/build.py`, then `$XDG_CACHE_HOME/groupnorm` "
    "(`~/.cache/groupnorm`)",
)  # fmt: skip
CPU_MARCH = Variable(
    "GROUPNORM_CPU_MARCH", "native", _march,
    "The target the CPU kernel library is compiled for (`-march=`, part of the library's file name): `native` "
    "is this machine; `x86-64-v4` (AVX-512), `x86-64-v3` (AVX2) and `x86-64` (SSE2) build the code that "
    "machines of each level run.",
)  # fmt: skip
CPU_SMALL_NUMEL = Variable(
    "GROUPNORM_CPU_SMALL_NUMEL", None, _non_negative_int,
    "Size below which a plain (or ReLU/residual) float32 CPU call runs torch's own `group_norm`; `0` keeps "
    "every call on the kernels. Setting it also turns off the measured rule for larger plain calls "
    "(`groupnorm/ops/plain_routing.json`).",
    default_text="per layout and epilogue (`groupnorm.ops.routing.DEFAULT_SMALL_CPU_NUMEL*`)",
)  # fmt: skip
CPU_WAVE_BYTES = Variable(
    "GROUPNORM_CPU_WAVE_BYTES", 4 << 20, _non_negative_int,
    "Input bytes per wave of the CPU kernels (the apply pass finds its data in cache).",
    default_text="`4194304` (4 MiB)",
)  # fmt: skip
CPU_STREAM_BYTES = Variable(
    "GROUPNORM_CPU_STREAM_BYTES", None, _non_negative_int,
    "Output size from which the CPU kernels write with streaming stores.",
    default_text="half the last-level cache (`groupnorm.ops.cpu.kernels.DEFAULT_STREAM_BYTES`)",
)  # fmt: skip
DATA = Variable(
    "GROUPNORM_DATA", None, _text,
    "Where `groupnorm repro` looks for (and downloads) named datasets, one folder per dataset.",
    default_text="`~/.cache/groupnorm/data`",
)  # fmt: skip
IN_MEMORY_LIMIT = Variable(
    "GROUPNORM_IN_MEMORY_LIMIT", 8 << 30, _non_negative_int,
    "Decoded size (bytes) above which an ImageFolder training set is streamed from disk instead of held in memory.",
    default_text="`8589934592` (8 GiB)",
)  # fmt: skip
BENCH_COMPILE_BACKEND = Variable(
    "GROUPNORM_BENCH_COMPILE_BACKEND", "inductor", _text,
    "The `torch.compile` backend of the `torch-compile` benchmark provider (a dry run uses `aot_eager`).",
)  # fmt: skip
FUZZ_EXAMPLES = Variable(
    "GROUPNORM_FUZZ_EXAMPLES", 40, _non_negative_int,
    "Hypothesis examples per test of `tests/fuzz/test_fuzz_op.py`.",
    scope="tests",
)  # fmt: skip
TRITON_FUZZ_EXAMPLES = Variable(
    "GROUPNORM_TRITON_FUZZ_EXAMPLES", 12, _non_negative_int,
    "Hypothesis examples per path of `tests/triton/test_triton_fuzz.py`.",
    scope="tests",
)  # fmt: skip
TEST_TIMEOUT_S = Variable(
    "GROUPNORM_TEST_TIMEOUT_S", 0, _non_negative_int,
    "Seconds after which a Triton test fails as too slow (`scripts/gpu_check.sh` sets it); `0`: no limit.",
    scope="tests",
)  # fmt: skip
TEST_ALLOW_NO_KERNELS = Variable(
    "GROUPNORM_TEST_ALLOW_NO_KERNELS", False, _switch,
    "`1` lets the suite pass without the compiled CPU kernels (a machine without a C compiler): the kernel tests "
    "skip instead of failing.",
    default_text="off: a failed or missing kernel build fails the suite",
    scope="tests",
)  # fmt: skip

VARIABLES: tuple[Variable, ...] = (
    CPU_KERNEL, CPU_CC, CACHE_DIR, CPU_MARCH, CPU_SMALL_NUMEL, CPU_WAVE_BYTES, CPU_STREAM_BYTES, DATA,
    IN_MEMORY_LIMIT, BENCH_COMPILE_BACKEND, FUZZ_EXAMPLES, TRITON_FUZZ_EXAMPLES, TEST_TIMEOUT_S,
    TEST_ALLOW_NO_KERNELS,
)  # fmt: skip


def markdown_table() -> str:
    """The table of ``docs/environment.md``: one row per variable, the package's first, then the test suite's."""
    lines = ["| Variable | Read by | Default | Meaning |", "|---|---|---|---|"]
    for v in VARIABLES:
        lines.append(f"| `{v.name}` | {v.scope} | {v.shown_default()} | {v.meaning} |")
    return "\n".join(lines) + "\n"
