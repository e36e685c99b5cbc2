"""The run description: one object names a run, keys its comparison and reads a stored config."""

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from suite.errors import SuiteError
from suite.spec.plan import Job, resolve_hparams
from suite.spec.run import ModelSpec, NumericsSpec, RunDescription, spec_field
from suite.spec.settings import get_setting
from suite.store.migrate import job_of
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
    """A config as the runner writes it (the identity, then the record over it: the method's full
    hyperparameters, names, provenance) is read back into the job whose description named it."""
    job = Job(TINY, method, resolve_hparams(TINY, method, None), 0, **kw)
    desc = job.describe("fp")
    config = {
        **desc.identity(),
        "hparams": job.hparams,  # every hyperparameter, not only those that define the result
        "setting": "tiny",
        "baseline_seed": job.baseline_seed,
        "setting_definition": TINY.to_dict(),
        "processor": "some CPU",
        **job.numerics.record(),
    }
    assert job.hparams != desc.identity()["hparams"] or method in ("l1", "random")  # the record differs
    back = job_of(config).describe("fp")
    assert back == desc


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
    """A new field that defines results (here a hypothetical input resolution of the model) is one
    declaration: at its default it leaves every name as it was; set, it names another run and
    another comparison."""

    @dataclass(frozen=True)
    class ResizedModel(ModelSpec):
        input_size: int | None = spec_field(default=None, omit_default=True)

    base = _desc("l1")
    fields = {f: getattr(base.model, f) for f in ("name", "layers", "granularity", "code", "round_to")}
    same = replace(base, model=ResizedModel(**fields))
    resized = replace(base, model=ResizedModel(**fields, input_size=64))
    assert same.name == base.name and same.comparison() == base.comparison()
    assert resized.identity() == {**base.identity(), "input_size": 64}
    assert resized.name != base.name and resized.comparison() != base.comparison()


def test_round_to_keeps_multiples_names_its_runs_and_the_pruned_model_runs():
    """``suite run --round-to 8`` on fmnist-cnn4 at 0.7: every pruned conv keeps a multiple of 8
    filters (counted on the pruned model itself), the model runs, the runs are other runs in another
    comparison, and without the option every name is what it was."""
    import copy

    import torch

    from suite.cli.options import setting_of
    from suite.models.nets import example_input

    def args(**kw):
        return type("Args", (), {"setting": "fmnist-cnn4", "ratios": "0.7", "skip": None, "target": None, **kw})()

    plain, aligned = setting_of(args()), setting_of(args(align_to=8))
    model = plain.build_model()
    layers = aligned.layer_ratios(model)
    assert layers.keys() == plain.layer_ratios(model).keys()
    pruned = copy.deepcopy(model)
    choice = {n: list(range(round(r * pruned.get_submodule(n).out_channels))) for n, r in layers.items()}
    aligned.layout.remove(pruned, choice, example_input(1, (28, 28)))
    kept = {n: pruned.get_submodule(n).out_channels for n in layers}
    assert all(k % 8 == 0 for k in kept.values()), kept
    assert kept != {
        n: model.get_submodule(n).out_channels - round(0.7 * model.get_submodule(n).out_channels) for n in layers
    }
    assert pruned(torch.zeros(2, 1, 28, 28)).shape == (2, 10)

    hp = resolve_hparams(plain, "l1", None)
    before, after = Job(plain, "l1", hp, 0).describe("fp"), Job(aligned, "l1", hp, 0).describe("fp")
    assert "round_to" not in before.identity() and after.identity()["round_to"] == 8
    assert after.name != before.name and after.comparison() != before.comparison()
    with pytest.raises(SuiteError, match="--round-to 0"):
        setting_of(args(align_to=0))


def test_fp32_contiguous_eager_add_nothing_to_a_name():
    assert NumericsSpec.of(Numerics()).identity() == {}
    assert NumericsSpec.of(Numerics("bf16", True, True)).identity() == {
        "precision": "bf16",
        "channels_last": True,
        "compile": True,
    }
