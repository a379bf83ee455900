"""The reproduction suite: the paper's experiments at any scale (``groupnorm repro``).

Example::

    from groupnorm.repro import HParams, SweepSpec, run_sweep
    spec = SweepSpec(base=HParams(dataset="digits", devices=2, epochs=3), norms=["bn", "gn"], batch_per_device=[16, 2])
    run_sweep(spec, "runs/mini")   # -> runs/mini/report.md
"""

from __future__ import annotations

import importlib

# loaded on first access, so that a module using one piece (the benchmark's atomic writes in
# ``groupnorm.repro.runtime``) does not load the whole suite
_LAZY = {
    "HParams": "groupnorm.repro.hparams",
    "SweepSpec": "groupnorm.repro.sweep",
    "run_sweep": "groupnorm.repro.sweep",
}

__all__ = ["HParams", "SweepSpec", "run_sweep"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'groupnorm.repro' has no attribute {name!r}")
