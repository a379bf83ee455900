"""Kernel benchmark: ``groupnorm bench``.

Shapes come from real networks (:mod:`.shapes`), providers are a name -> setup registry (:mod:`.providers`), the
harness times them in interleaved rounds beside a plain copy of the same size (:mod:`.harness`), and
:mod:`.report` writes the table, CSV and JSON. Example::

    >>> from groupnorm.bench import harness, shapes
    >>> case = harness.Case(shapes.Shape("tiny", (2, 64, 8, 8), 32, "test"), "nchw", "float32", "silu", False, "fwd")
    >>> records = harness.run_case(case, ["groupnorm", "torch"], device="cpu", rounds=3, min_round_s=0.001)
    >>> sorted(r["provider"] for r in records)
    ['groupnorm', 'torch']
"""
