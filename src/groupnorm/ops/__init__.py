"""The registered op and its implementations.

Importing this package registers ``torch.ops.groupnorm.forward`` / ``torch.ops.groupnorm.backward`` and the
plain-torch fallback; kernel modules add themselves to :mod:`groupnorm.ops.registry`.
"""

from groupnorm.ops import op, registry, torch_impl

__all__ = ["op", "registry", "torch_impl"]
