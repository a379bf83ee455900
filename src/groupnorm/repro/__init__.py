"""The reproduction suite: the paper's experiments at any scale (``groupnorm repro``).

Example::

    from groupnorm.repro import HParams, SweepSpec, run_sweep
    spec = SweepSpec(base=HParams(dataset="digits", devices=2, epochs=3), norms=["bn", "gn"], batch_per_device=[16, 2])
    run_sweep(spec, "runs/mini")   # -> runs/mini/report.md
"""

from groupnorm.repro.hparams import HParams
from groupnorm.repro.sweep import SweepSpec, run_sweep

__all__ = ["HParams", "SweepSpec", "run_sweep"]
