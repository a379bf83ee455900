"""The rewrites behind :func:`groupnorm.patch`, one file per job.

``swap`` moves GroupNorms onto the fused op; ``pairs`` fuses a norm and the activation a known block's ``forward``
applies right after it; ``diffusers``, ``timm`` and ``torchvision`` hold what is known about those libraries'
classes (recognised by class name and structure, so nothing is imported when a library is absent); ``resnets``
(with the forwards in ``resnet_forwards``) fuses timm's and torchvision's ResNet block ends, norm + shortcut ->
activation; ``sequential`` and ``graph`` are the generic rewrites (``nn.Sequential`` children, a ``torch.fx``
graph); ``residual`` is the norm that adds a residual as ``+`` would, ``subclass`` the same-named subclass with
another ``forward`` that rewritten blocks and norms become; ``leftovers`` says why each remaining GroupNorm was not
fused.
"""
