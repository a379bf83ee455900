"""torch.export and torch.compile on whole models: programs that run, no recompiles across batch sizes."""

import pytest
import torch
import torch._dynamo.testing

import groupnorm
from groupnorm.testing import assert_close_verbose


class EveryEpilogueModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.norm = groupnorm.GroupNorm(4, 8, activation="gelu_tanh")

    def forward(self, x, emb):
        scale, shift = emb.chunk(2, dim=1)
        return self.norm(self.conv(x), residual=x, scale=scale, shift=shift)


def _inputs(n):
    gen = torch.Generator().manual_seed(n)
    return torch.randn(n, 8, 5, 5, generator=gen), torch.randn(n, 16, generator=gen)


def test_export_with_dynamic_batch_runs_every_size():
    model = EveryEpilogueModule().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, _inputs(2), dynamic_shapes=({0: batch}, {0: batch}))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "groupnorm.forward.default" in targets
    for n in (1, 3, 7):
        x, emb = _inputs(n)
        assert_close_verbose(program.module()(x, emb), model(x, emb), atol=1e-6, rtol=1e-6, name=f"batch {n}")


def test_export_resnet50_gn_runs():
    model = groupnorm.models.resnet50(norm="gn", num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    program = torch.export.export(model, (x,))
    assert_close_verbose(program.module()(x), model(x), atol=1e-4, rtol=1e-4, name="resnet50-gn")


def test_export_converted_torchvision_model_runs():
    torchvision = pytest.importorskip("torchvision")
    model = groupnorm.convert_norms(torchvision.models.resnet18(num_classes=10), "gn")
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    program = torch.export.export(model, (x,))
    assert_close_verbose(program.module()(x), model(x), atol=1e-4, rtol=1e-4, name="converted resnet18")


def test_compile_dynamic_batch_does_not_recompile_per_size():
    torch._dynamo.reset()
    model = EveryEpilogueModule()
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
    for n in (2, 3, 5, 9):
        x, emb = _inputs(n)
        assert_close_verbose(compiled(x, emb), model(x, emb), atol=1e-6, rtol=1e-6)
    assert counter.frame_count == 1


def test_compiled_converted_resnet_has_no_graph_breaks():
    model = groupnorm.convert_norms(groupnorm.models.resnet18(norm="bn", num_classes=10), "gn")
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
