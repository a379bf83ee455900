"""The implementations a test suite runs against: the plain-torch fallback and every registered kernel, each on
a device this machine has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from groupnorm.ops.registry import Implementation


@dataclass(frozen=True)
class ImplementationUnderTest:
    """A registered implementation and the device its inputs go to."""

    implementation: Implementation
    device: str

    def __str__(self) -> str:
        return (
            self.implementation.name if self.device == "cpu" else f"{self.implementation.name}-{self.device}"
        )


def device_available(device_type: str) -> bool:
    """Whether tensors can be made on ``device_type`` here."""
    try:
        torch.empty(0, device=device_type)
    except (RuntimeError, AssertionError):  # torch raises either for a device it was not built with
        return False
    return True


def implementations_under_test(devices: Sequence[str] | None = None) -> list[ImplementationUnderTest]:
    """The fallback on every available device, then each registered implementation on its own device type.

    ``devices`` limits the device types (default: every one this machine has among CPU and those with a
    registered implementation).
    """
    from groupnorm.ops import registry  # importing the package registers the implementations

    registered = registry.implementations()
    wanted = devices if devices is not None else ["cpu", *dict.fromkeys(i.device_type for i in registered)]
    present = [d for d in dict.fromkeys(wanted) if device_available(d)]
    return [ImplementationUnderTest(registry.fallback(), d) for d in present] + [
        ImplementationUnderTest(impl, impl.device_type) for impl in registered if impl.device_type in present
    ]
