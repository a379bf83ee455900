"""torch's thread count for the length of a command, then back to what it was.

``groupnorm repro ... --threads N`` (or a preset's ``threads``) sets the count for the process it runs in. Run as
a program that is the whole process; called in-process (``groupnorm.cli.main([...])`` from a test, a notebook or
another program) it must not leave the caller's process on N threads afterwards.

Example::

    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(threads)`` (None or 0: leave the count alone), then restore it."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
