"""The ctypes declarations of ops/cpu/loader.py are the C header's signatures, and the ABI number has one home."""

from __future__ import annotations

import ctypes
import re

from groupnorm.ops.cpu import build, loader

from .conftest import require_library

HEADER = build.CSRC / "groupnorm_cpu.h"
C_TYPES = {"int64_t": ctypes.c_int64, "float": ctypes.c_float, "int": ctypes.c_int}


def header_signatures() -> dict[str, tuple[object, list[object]]]:
    """name -> (ctypes return type, ctypes argument types) of every function groupnorm_cpu.h declares."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    signatures = {}
    for ret, name, args in re.findall(r"^(int|void)\s+(gn_\w+)\((.*?)\);", text, flags=re.S | re.M):
        types = []
        for arg in (a.strip() for a in args.split(",")):
            if arg == "void":
                continue
            types.append(ctypes.c_void_p if "*" in arg else C_TYPES[arg.replace("const", "").split()[0]])
        signatures[name] = (ctypes.c_int if ret == "int" else None, types)
    return signatures


def test_every_header_function_is_declared_with_its_argument_types():
    lib = require_library()
    signatures = header_signatures()
    assert len(signatures) >= 8, signatures
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        assert function.restype == restype, name
        assert list(function.argtypes) == argtypes, (
            f"{name}: loader declares {function.argtypes}, header {argtypes}"
        )


def test_the_abi_number_is_written_once_in_the_header():
    assert f"#define GN_ABI_VERSION {loader.ABI_VERSION}" in HEADER.read_text()
    assert "return GN_ABI_VERSION;" in (build.CSRC / "groupnorm_cpu.c").read_text()
    assert not any(
        "ABI" in flag for flag in build.cflags()
    )  # another revision's sources report their own number
    assert require_library().gn_abi_version() == loader.ABI_VERSION
