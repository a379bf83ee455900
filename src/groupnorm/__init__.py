"""groupnorm: Group Normalization (Wu & He, 2018) for PyTorch.

Example::

    >>> import torch, groupnorm
    >>> y = groupnorm.group_norm(torch.randn(2, 64, 8, 8), 32, activation="silu")
"""

from groupnorm._version import __version__
from groupnorm.functional import group_norm
from groupnorm.reference import group_norm_ref

__all__ = [
    "__version__",
    "group_norm",
    "group_norm_ref",
]
