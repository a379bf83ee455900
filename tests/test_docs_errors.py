"""docs/errors.md is executable: every invalid call it lists raises the error and message it shows."""

import re
from pathlib import Path

import pytest
import torch

import groupnorm

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
ROW = re.compile(r"^\| `(?P<call>.+)` \| (?P<error>\w+) \| `(?P<message>.+)` \|$")


def documented_calls():
    rows = [m.groupdict() for m in map(ROW.match, DOC.read_text().splitlines()) if m]
    assert len(rows) >= 30, "docs/errors.md lost its table"
    return rows


@pytest.mark.parametrize("row", documented_calls(), ids=lambda r: r["call"][:60])
def test_documented_call_raises_documented_error(row):
    namespace = {"torch": torch, "groupnorm": groupnorm, "X": torch.randn(2, 8, 4, 4)}
    error = {"ValueError": ValueError, "TypeError": TypeError}[row["error"]]
    with pytest.raises(error) as info:
        eval(row["call"], namespace)  # noqa: S307  (the calls are the documentation's own examples)
    assert row["message"] in str(info.value)
