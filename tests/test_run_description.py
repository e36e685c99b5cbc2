"""The run description: one object names a run, keys its comparison and reads a stored config."""

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from suite.spec.plan import Job, resolve_hparams
from suite.spec.run import ModelSpec, NumericsSpec, RunDescription, spec_field
from suite.spec.settings import get_setting
from suite.store.files import content_hash
from suite.training.numerics import Numerics

TINY = get_setting(str(Path(__file__).parent / "data" / "tiny-fmnist.toml"))


def _desc(method="l1", seed=0, **kw) -> RunDescription:
    return Job(TINY, method, resolve_hparams(TINY, method, None), seed, **kw).describe("fp")


@pytest.mark.parametrize(
    "method,kw",
    [
        ("l1", {}),
        ("greg1", {"protocol": "total", "total_samples": 9_000}),
        ("greg2-unstructured", {"baseline_seed": 2}),
        ("l1", {"numerics": Numerics("bf16", channels_last=True)}),
        ("random", {"user_baseline": "user-0123"}),
    ],
)
def test_a_stored_config_gives_back_the_description_that_named_it(method, kw):
    desc = _desc(method, **kw)
    config = {**desc.identity(), "setting": "tiny", "processor": "some CPU"}  # a record adds provenance
    assert RunDescription.from_config(config) == desc
    assert RunDescription.from_config(config).name == desc.name == content_hash(desc.identity())


def test_the_comparison_key_is_the_identity_less_what_a_method_and_a_seed_choose():
    base = _desc("l1")
    assert _desc("greg1", seed=2).comparison() == _desc("random", seed=1).comparison() == base.comparison()
    assert _desc("greg1").name != base.name != _desc("l1", seed=1).name
    # another budget, baseline, precision or target is another comparison
    assert _desc("l1", protocol="total", total_samples=9_000).comparison() != base.comparison()
    assert _desc("l1", baseline_seed=1).comparison() != base.comparison()
    assert _desc("l1", numerics=Numerics("bf16")).comparison() != base.comparison()
    other_target = Job(replace(TINY, ratios="0.7"), "l1", resolve_hparams(TINY, "l1", None), 0).describe("fp")
    assert other_target.comparison() != base.comparison()


def test_adding_a_field_is_one_change_and_renames_no_stored_run():
    """A new field that defines results (here a channel rounding of the model) is one declaration:
    at its default it leaves every name as it was; set, it names another run and another comparison."""

    @dataclass(frozen=True)
    class RoundedModel(ModelSpec):
        round_to: int = spec_field(default=1, omit_default=True)

    base = _desc("l1")
    fields = {f: getattr(base.model, f) for f in ("name", "layers", "granularity", "code")}
    same = replace(base, model=RoundedModel(**fields))
    rounded = replace(base, model=RoundedModel(**fields, round_to=8))
    assert same.name == base.name and same.comparison() == base.comparison()
    assert rounded.identity() == {**base.identity(), "round_to": 8}
    assert rounded.name != base.name and rounded.comparison() != base.comparison()


def test_fp32_contiguous_eager_add_nothing_to_a_name():
    assert NumericsSpec.of(Numerics()).identity() == {}
    assert NumericsSpec.of(Numerics("bf16", True, True)).identity() == {
        "precision": "bf16",
        "channels_last": True,
        "compile": True,
    }
