"""The registered op and its implementations.

Importing this package registers ``torch.ops.groupnorm.forward`` / ``torch.ops.groupnorm.backward``, the
plain-torch fallback, the compiled CPU kernels (loaded, and built if needed, on their first call) and, where CUDA
and Triton are present, the Triton kernels (each kernel package registers itself when imported). See
:mod:`groupnorm.ops.routing` for how a call picks one.
"""

from groupnorm.ops import cpu, op, registry, routing, torch_impl
from groupnorm.ops import triton as triton

__all__ = ["cpu", "op", "registry", "routing", "torch_impl", "triton"]
