"""Parameter gradients of the backward: dweight, dbias, dscale, dshift from the per-sample channel sums.

The backward's main kernels leave, per sample and channel, P = sum(dy * x_hat) and Q = sum(dy) (after the
activation's derivative) in chunk 0's slots of the (N, SPLIT, C) buffers; one launch (the plan's last,
``bwd_param_kernel``) reduces them over the samples.

Example (inside :func:`groupnorm.ops.triton.backward_launcher.backward`)::

    dw, db, dscale, dshift = reduce(step, want, weight, bias, scale, shift, part_p, part_q, bk)
"""

from __future__ import annotations

import torch


def reduce(step: tuple, want: tuple[bool, bool, bool, bool], weight, bias, scale, shift, part_p, part_q, bk):
    """(dweight, dbias, dscale, dshift), contiguous, None where not ``want``-ed, by the launch ``step`` (kernel
    name, grid, first unit, keywords)."""
    want_dw, want_db, want_dscale, want_dshift = want

    def out(wanted, owner):
        return torch.empty(owner.shape, device=owner.device, dtype=owner.dtype) if wanted else None

    n, split, c = part_p.shape  # the totals are chunk 0's slots: sample n's at n * split * c
    dw, db = out(want_dw, weight), out(want_db, bias)
    dscale, dshift = out(want_dscale, scale), out(want_dshift, shift)
    dummy = part_p  # stands in for absent tensors; never dereferenced
    name, grid, _start, kw = step
    getattr(bk, name)[grid](
        *(t if t is not None else dummy for t in (weight, bias, scale)),
        part_p,
        part_q,
        *(t if t is not None else dummy for t in (dw, db, dscale, dshift)),
        n,
        c,
        split * c,
        **kw,
    )
    return dw, db, dscale, dshift


def like_owner(grad: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """``grad`` in its owner's dtype and strides (a copy only when the owner is not contiguous)."""
    if owner.is_contiguous() and grad.dtype == owner.dtype:
        return grad
    return torch.empty_like(owner).copy_(grad)
