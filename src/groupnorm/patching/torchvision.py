"""What ``patch`` knows about torchvision (recognised by class name and module, torchvision is never imported).

* ``ResNet`` applies ``bn1 -> relu`` in its stem (``_forward_impl``), and uses that ``relu`` nowhere else;
  ``pairs`` fuses them once the installed source confirms it, in place (with its blocks fused by
  :mod:`~groupnorm.patching.resnets`, a torchvision ResNet with GroupNorm needs no traced graph).
* ``Conv2dNormActivation`` is a ``Sequential``, fused by :mod:`~groupnorm.patching.sequential`.
"""

from __future__ import annotations

from groupnorm.patching.pairs import PairRule

PAIR_RULES: dict[str, tuple[PairRule, ...]] = {"ResNet": (PairRule("bn1", "relu"),)}
