"""ONNX export: one GroupNormalization node (opset 21) per GroupNorm, a decomposition below it, run and compared."""

import warnings

import numpy as np
import pytest
import torch

import groupnorm
from groupnorm.export import to_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
from onnx.reference import ReferenceEvaluator  # noqa: E402


class DiffusionBlock(torch.nn.Module):
    """Conv -> GN(+scale/shift, residual, activation): every epilogue the op has."""

    def __init__(self, activation="silu", affine=True):
        super().__init__()
        self.conv = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.weight = torch.nn.Parameter(torch.randn(16)) if affine else None
        self.bias = torch.nn.Parameter(torch.randn(16)) if affine else None
        self.activation = activation

    def forward(self, x, emb):
        scale, shift = emb.chunk(2, dim=1)
        return groupnorm.group_norm(
            self.conv(x),
            4,
            self.weight,
            self.bias,
            activation=self.activation,
            residual=x,
            scale=scale,
            shift=shift,
        )


def _inputs(n=2):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 16, 6, 6, generator=gen), torch.randn(n, 32, generator=gen)


def _run_ort(program_or_proto, feeds):
    proto = getattr(program_or_proto, "model_proto", program_or_proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, feeds)))[0]


def _op_types(proto):
    return [node.op_type for node in proto.graph.node]


@pytest.mark.parametrize("activation", ["none", "relu", "silu", "gelu", "gelu_tanh"])
def test_opset21_one_group_normalization_node_runs_in_ort_and_reference(activation, tmp_path):
    torch.manual_seed(0)
    model = DiffusionBlock(activation).eval()
    x, emb = _inputs()
    path = tmp_path / "block.onnx"
    program = to_onnx(model, (x, emb), path)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert _op_types(proto).count("GroupNormalization") == 1
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 21
    (gn_node,) = [n for n in proto.graph.node if n.op_type == "GroupNormalization"]
    stash = {a.name: a.i for a in gn_node.attribute}.get("stash_type", 1)
    assert stash == 1  # float statistics

    expected = model(x, emb).detach().numpy()
    got_ort = _run_ort(program, [x.numpy(), emb.numpy()])
    np.testing.assert_allclose(got_ort, expected, atol=1e-5, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got_ref = ReferenceEvaluator(proto).run(
            None, {i.name: v for i, v in zip(proto.graph.input, [x.numpy(), emb.numpy()])}
        )[0]
    np.testing.assert_allclose(got_ref, expected, atol=1e-5, rtol=1e-5)


def test_dynamic_batch_runs_other_batch_sizes():
    model = DiffusionBlock("silu").eval()
    program = to_onnx(model, _inputs(2), None)
    for n in (1, 5):
        x, emb = _inputs(n)
        np.testing.assert_allclose(
            _run_ort(program, [x.numpy(), emb.numpy()]), model(x, emb).detach().numpy(), atol=1e-5, rtol=1e-5
        )


def test_without_affine_parameters():
    model = DiffusionBlock("none", affine=False).eval()
    x, emb = _inputs()
    program = to_onnx(model, (x, emb), None)
    np.testing.assert_allclose(
        _run_ort(program, [x.numpy(), emb.numpy()]), model(x, emb).detach().numpy(), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("opset", [18, 20])
def test_older_opsets_use_the_decomposition(opset):
    torch.manual_seed(0)
    model = DiffusionBlock("gelu").eval()
    x, emb = _inputs()
    program = to_onnx(model, (x, emb), None, opset=opset)
    proto = program.model_proto
    onnx.checker.check_model(proto)
    assert "GroupNormalization" not in _op_types(proto)
    np.testing.assert_allclose(
        _run_ort(program, [x.numpy(), emb.numpy()]), model(x, emb).detach().numpy(), atol=1e-5, rtol=1e-5
    )


def test_opset_below_exporter_minimum_is_refused():
    with pytest.raises(ValueError, match="opset=17"):
        to_onnx(DiffusionBlock(), _inputs(), None, opset=17)


@pytest.fixture(scope="module")
def onnx_node_cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.random.seed(0)
        cases = [c for c in collect_testcases("GroupNormalization") if not c.name.endswith("_expanded")]
    assert cases, "onnx ships GroupNormalization node test cases"
    return cases


def test_onnx_node_test_cases_pass_through_our_op(onnx_node_cases, implementation):
    for case in onnx_node_cases:
        (node,) = case.model.graph.node
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        for inputs, outputs in case.data_sets:
            x, scale, bias = (torch.from_numpy(np.asarray(a)) for a in inputs)
            y = groupnorm.group_norm(x, attrs["num_groups"], scale, bias, attrs.get("epsilon", 1e-5))
            implementation.assert_implementation(calls=1)
            np.testing.assert_allclose(y.numpy(), outputs[0], atol=1e-5, rtol=1e-5, err_msg=case.name)


def test_converted_zoo_model_exports_one_node_per_group_norm():
    torchvision = pytest.importorskip("torchvision")
    model, summary = groupnorm.convert_norms(
        torchvision.models.resnet18(num_classes=10), "gn", return_report=True
    )
    model = groupnorm.patch(model).eval()  # fused GN+ReLU must export as GroupNormalization + Relu
    x = torch.randn(2, 3, 32, 32)
    program = to_onnx(model, (x,), None)
    onnx.checker.check_model(program.model_proto)
    assert _op_types(program.model_proto).count("GroupNormalization") == len(summary.replaced)
    np.testing.assert_allclose(
        _run_ort(program, [x.numpy()]), model(x).detach().numpy(), atol=1e-4, rtol=1e-4
    )
