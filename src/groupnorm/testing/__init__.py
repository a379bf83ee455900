"""Test helpers shared by the project's tests and by anyone testing a GroupNorm implementation.

- :data:`NAMED_SHAPES`: the edge cases every implementation must pass, each with the reason it is there.
- :data:`TOLERANCES`: absolute/relative tolerance per dtype for outputs normalized to unit scale;
  :func:`gradient_tolerance` the same for gradients.
- :func:`reference_with_grads`: the float64 output and every gradient, by autograd through the reference.
- :func:`assert_close_verbose`: like ``torch.testing.assert_close`` but says how many elements differ and where.
- :func:`assert_no_worse_than_torch`: the three-way check |ours - ref64| <= 2 |torch - ref64| + atol.
- :func:`conformance_cases`, :func:`check_case`, :func:`run_conformance`: the conformance suite, for any
  forward/backward pair with the op's signatures.

Modules: ``shapes`` (named shapes, layouts, inputs), ``tolerances``, ``compare``, ``reference_grads``,
``conformance``, ``implementations`` (what a suite runs against), ``op_calls`` (a hypothesis strategy).

Example::

    >>> from groupnorm.testing import NAMED_SHAPES, assert_close_verbose
    >>> NAMED_SHAPES[0].shape
    (2, 8)
"""

from groupnorm.testing.compare import assert_close_verbose, assert_no_worse_than_torch
from groupnorm.testing.conformance import (
    EPILOGUES,
    PRECISIONS,
    ConformanceCase,
    Epilogue,
    Precision,
    check_case,
    conformance_cases,
    run_conformance,
)
from groupnorm.testing.implementations import ImplementationUnderTest, implementations_under_test
from groupnorm.testing.models import randomize_norm_affine
from groupnorm.testing.op_calls import op_calls
from groupnorm.testing.reference_grads import (
    GRADIENT_NAMES,
    call_reference,
    reference_statistics,
    reference_with_grads,
)
from groupnorm.testing.shapes import (
    LAYOUTS,
    NAMED_SHAPES,
    NamedShape,
    make_input,
    shape_layout_cases,
    torch_group_norm_accepts,
    with_layout,
)
from groupnorm.testing.tolerances import TOLERANCES, gradient_tolerance, rounding_floor

__all__ = [
    "EPILOGUES",
    "GRADIENT_NAMES",
    "LAYOUTS",
    "NAMED_SHAPES",
    "PRECISIONS",
    "TOLERANCES",
    "ConformanceCase",
    "Epilogue",
    "ImplementationUnderTest",
    "NamedShape",
    "Precision",
    "assert_close_verbose",
    "assert_no_worse_than_torch",
    "call_reference",
    "check_case",
    "conformance_cases",
    "gradient_tolerance",
    "implementations_under_test",
    "make_input",
    "op_calls",
    "randomize_norm_affine",
    "reference_statistics",
    "reference_with_grads",
    "rounding_floor",
    "run_conformance",
    "shape_layout_cases",
    "torch_group_norm_accepts",
    "with_layout",
]
