"""What AOTAutograd makes of the op on CUDA tensors, without a GPU: fake CUDA tensors, a simulated H200 for the
planner and an sm_90 target for torch's mutation analysis of the kernels. Prints one JSON object.

Run by tests/ops/test_decomposition.py in a process of its own: the kernels must be compiled Triton functions,
and once tests/triton is collected the session's kernels are interpreted ones (TRITON_INTERPRET=1).

    python tests/ops/fake_cuda_trace.py
"""

from __future__ import annotations

import json
import os
import re

os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402
from functorch.compile import aot_function  # noqa: E402
from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

import groupnorm.ops  # noqa: E402, F401
import groupnorm.ops.triton as gn_triton  # noqa: E402
from groupnorm.ops import registry  # noqa: E402
from groupnorm.ops.triton import devices, launch, layout  # noqa: E402
from groupnorm.ops.triton.planner import DeviceSpec  # noqa: E402

H200 = DeviceSpec(sm_count=132, l2_bytes=60 * 2**20)


class _Sm90Driver:
    """What torch asks Triton's driver for when it analyses which kernel arguments are written."""

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)


def simulate_gpu() -> None:
    devices._cuda_device_spec = lambda index: H200
    torch.cuda.current_device = lambda: 0  # the launcher's device switch sees device 0 already current
    triton.runtime.driver.set_active(_Sm90Driver())
    registry.register_implementation(gn_triton.implementation())


def graphs_of(fn, *inputs) -> list[str]:
    """The code of the graphs AOTAutograd hands to the compiler for ``fn`` (no gradients: the autograd engine
    needs a real CUDA device, so the backward op is traced on its own)."""
    codes = []

    def capture(gm, _example_inputs):
        codes.append(gm.code)
        return gm

    aot_function(fn, fw_compiler=capture)(*inputs)
    return codes


def kernel_name(index: int) -> str:
    """The name of the Triton function behind a graph's ``kernel_idx`` (under the autotuner that carries its
    ``num_warps``)."""
    kernel = kernel_side_table.get_kernel(index)
    while not isinstance(kernel, JITFunction):
        kernel = kernel.fn
    return kernel.__name__


def summary(codes: list[str]) -> dict:
    text = "\n".join(codes)
    return {
        "graphs": len(codes),
        "launches": [c.count("triton_kernel_wrapper_functional(") for c in codes],
        "kernels": [kernel_name(int(i)) for i in re.findall(r"kernel_idx = (\d+)", text)],
        "opaque_forward": "groupnorm.forward" in text,
        "opaque_backward": "groupnorm.backward" in text,
        "cloned": sorted(set(re.findall(r"tensors_to_clone = \[([^\]]*)\]", text))),
    }


def forward_op(num_groups):
    def fn(x, w, b, res=None):
        return torch.ops.groupnorm.forward(x, w, b, num_groups, 1e-5, "silu", res, None, None)[0]

    return fn


def backward_op(num_groups):
    def fn(x, w, b, res=None):
        mean = x.new_empty((x.shape[0], num_groups))
        mask = [True, True, True, res is not None, False, False]
        grads = torch.ops.groupnorm.backward(
            x, x, w, b, mean, mean, num_groups, "silu", res, None, None, mask
        )
        return grads[: 4 if res is not None else 3]

    return fn


def cuda_inputs(shape, *, channels_last=False, residual=False, device="cuda"):
    x = torch.empty(shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    tensors = [x, torch.empty(c, device=device), torch.empty(c, device=device)]
    if residual:
        tensors.append(torch.empty_like(x))
    return tensors


def eager_launches(inputs, num_groups) -> list[int]:
    """Kernel launches of the eager calls: forward, and backward with the gradients traced."""
    x, _w, _b, *res = inputs
    key = layout.key(x)
    residual = layout.key(res[0]) if res else None
    has = (True, True, False, False)
    fwd = launch.forward_launch(key, x.device, num_groups, "silu", has, residual, H200, None)
    mask = (True, True, True, bool(res), False, False)
    bwd = launch.backward_launch(key, key, x.device, num_groups, "silu", has, residual, mask, H200, None)
    return [fwd.launches(), bwd.launches()]


def symbolic_forward_graphs(inputs) -> list[str]:
    """The forward traced with symbolic batch and spatial sizes (as after a recompile on a new shape)."""
    dims = [DimDynamic.DYNAMIC, DimDynamic.STATIC, DimDynamic.DYNAMIC, DimDynamic.DYNAMIC]
    mode = FakeTensorMode(shape_env=ShapeEnv())
    x, w, b = inputs
    x = mode.from_tensor(x, symbolic_context=StatelessSymbolicContext(dynamic_sizes=dims))
    codes = []
    with mode:
        aot_function(forward_op(32), fw_compiler=lambda gm, _: codes.append(gm.code) or gm, dynamic=True)(
            x, mode.from_tensor(w), mode.from_tensor(b)
        )
    return codes


def main() -> None:
    simulate_gpu()
    report = {}
    cases = {  # name: shape, groups, channels_last, residual
        "small": ((2, 64, 16, 16), 32, False, False),
        "channels_last_residual": ((2, 64, 16, 16), 32, True, True),
        "video_1x128x20x256x256": ((1, 128, 20, 256, 256), 32, False, False),
    }
    with FakeTensorMode():
        for name, (shape, groups, channels_last, residual) in cases.items():
            inputs = cuda_inputs(shape, channels_last=channels_last, residual=residual)
            report[name] = {
                "forward": summary(graphs_of(forward_op(groups), *inputs)),
                "backward": summary(graphs_of(backward_op(groups), *inputs)),
                "eager_launches": eager_launches(inputs, groups),
            }
        cpu = cuda_inputs((2, 64, 16, 16), device="cpu")
        report["cpu"] = {
            "forward": summary(graphs_of(forward_op(32), *cpu)),
            "backward": summary(graphs_of(backward_op(32), *cpu)),
        }
        inputs = cuda_inputs((2, 64, 16, 16))
        with torch._functorch.config.patch(decompose_custom_triton_ops=False):  # as torch.export sets it
            report["export"] = {"forward": summary(graphs_of(forward_op(32), *inputs))}
    report["dynamic"] = {"forward": summary(symbolic_forward_graphs(inputs))}
    report["cache_kernels"] = {
        name: [k.__name__ for k in torch._library.triton.get_triton_kernels_for_op(name)]
        for name in ("groupnorm::forward", "groupnorm::backward")
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
