"""The usage examples in the public API's docstrings run and print what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "groupnorm",
    "groupnorm.functional",
    "groupnorm.stats",
    "groupnorm.tiled",
    "groupnorm.reference",
    "groupnorm.testing",
    "groupnorm.testing.conformance",
    "groupnorm.testing.reference_grads",
    "groupnorm.testing.models",
    "groupnorm.activations",
    "groupnorm.arguments",
    "groupnorm.machine",
    "groupnorm.bench.report",
    "groupnorm.bench.models_report",
    "groupnorm.env",
    "groupnorm.info",
    "groupnorm.ops.op",
    "groupnorm.ops.registry",
    "groupnorm.ops.routing",
    "groupnorm.ops.eager",
    "groupnorm.ops.triton.planner",
    "groupnorm.ops.triton.geometry",
    "groupnorm.ops.triton.launch_plan",
    "groupnorm.layers.group_norm",
    "groupnorm.layers.grouping",
    "groupnorm.layers.norm_registry",
    "groupnorm.layers.weight_standardization",
    "groupnorm.layers.describe",
    "groupnorm.convert",
    "groupnorm.patch",
    "groupnorm.patching.activations",
    "groupnorm.patching.subclass",
    "groupnorm.models",
    "groupnorm.export",
    "groupnorm.repro.augment",
    "groupnorm.repro.devices",
    "groupnorm.repro.shapes",
    "groupnorm.repro.splits",
    "groupnorm.repro.config_flags",
    "groupnorm.repro.hparams",
    "groupnorm.repro.classification",
    "groupnorm.repro.runner",
    "groupnorm.repro.detection.config",
    "groupnorm.repro.video.config",
    "groupnorm.repro.preflight",
    "groupnorm.repro.threads",
    "groupnorm.repro.detection.scenes",
    "groupnorm.repro.detection.evaluate",
    "groupnorm.repro.video.clips",
    "groupnorm.repro.video.data",
    "groupnorm.repro.video.model",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    from groupnorm.layers import norm_registry
    from groupnorm.ops import registry

    # Examples register norm kinds and implementations; keep those registrations out of the other tests.
    monkeypatch.setattr(norm_registry, "_NORMS", dict(norm_registry._NORMS))
    monkeypatch.setattr(registry, "_REGISTRY", {k: list(v) for k, v in registry._REGISTRY.items()})
    if name == "groupnorm.convert":
        pytest.importorskip("torchvision")
    if name == "groupnorm.repro.detection.evaluate":
        pytest.importorskip("pycocotools")
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    # a module listed here must have examples: an `Example::` block without `>>>` lines runs nothing and passes
    assert result.attempted >= 1, f"{name} has no doctest example (>>> lines) to run"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
