"""The rewrites behind :func:`groupnorm.patch`, one file per job.

``swap`` moves GroupNorms onto the fused op; ``pairs`` fuses a norm and the activation a known block's ``forward``
applies right after it; ``diffusers`` and ``timm`` hold what is known about those libraries' classes (recognised
by class name and structure, so nothing is imported when a library is absent); ``sequential`` and ``graph`` are
the generic rewrites (``nn.Sequential`` children, a ``torch.fx`` graph); ``leftovers`` says why each remaining
GroupNorm was not fused.
"""
