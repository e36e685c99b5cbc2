"""Run identity: named by what defines the result, code recorded beside it, old stores migrated."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from suite.data.split import STREAMS, stream_seed
from suite.spec.plan import Job, resolve_hparams
from suite.spec.settings import SETTINGS, get_setting
from suite.store import fingerprint
from suite.store.migrate import job_of, migrate
from suite.training.numerics import Numerics

TINY_FILE = Path(__file__).parent / "data" / "tiny-fmnist.toml"
TINY = get_setting(str(TINY_FILE))
PUBLISHED = Path(__file__).parent.parent / "leaderboards" / "runs"


def _folder(setting, method="l1", **kw):
    job = Job(setting, method, resolve_hparams(setting, method, None), 0, **kw)
    return job.folder(Path("runs"), "fp").name


def test_presentation_fields_do_not_name_a_run():
    base = _folder(TINY)
    assert _folder(replace(TINY, description="edited")) == base
    assert _folder(replace(TINY, targets=("0.9",))) == base
    assert _folder(replace(TINY, val_size=123)) == base
    assert _folder(replace(TINY, method_overrides={**TINY.method_overrides, "nni-slim": {"training_steps": 7}})) == base


def test_what_selects_data_model_targets_and_recipes_names_a_run():
    base = _folder(TINY)
    assert _folder(replace(TINY, train_limit=2048)) != base
    assert _folder(replace(TINY, ratios="0.7")) != base
    assert _folder(replace(TINY, finetune=replace(TINY.finetune, epochs=2))) != base
    assert _folder(TINY, baseline_seed=1) != base
    assert _folder(TINY, user_baseline="user-0123") != base
    assert _folder(TINY, protocol="total", total_samples=10_000) != base
    # a one-shot method reads no prune recipe: changing it does not rename its runs
    assert _folder(replace(TINY, prune=replace(TINY.prune, lr=0.5))) == base


def test_precision_layout_and_compile_name_a_run_only_when_not_fp32(monkeypatch):
    """fp32, contiguous, eager adds nothing to the identity, so every run stored before these
    options keeps its folder, whatever the default is on this machine; anything else is another
    run, with another baseline."""
    from types import SimpleNamespace

    from suite.training import numerics_default
    from suite.training.baseline import baseline_key

    base = _folder(TINY)
    monkeypatch.setattr(numerics_default, "fast_bf16", lambda device: True)  # even where bf16 is fast
    for precision in ("fp32", None):  # named, or the default
        assert _folder(TINY, numerics=numerics_default.resolve(precision, None, False, torch.device("cpu"))) == base
    assert _folder(TINY, numerics=Numerics()) == base
    others = [
        Numerics("bf16"),
        Numerics("fp16"),
        Numerics(channels_last=True),
        Numerics(compile=True),
        Numerics("bf16", channels_last=True),
    ]
    assert len({base} | {_folder(TINY, numerics=n) for n in others}) == 6
    data = SimpleNamespace(fingerprint="fp")
    keys = {baseline_key(TINY, 0, data, n) for n in others}
    assert baseline_key(TINY, 0, data, Numerics()) == baseline_key(TINY, 0, data) not in keys and len(keys) == 5


def test_published_baselines_keep_their_keys():
    """The baseline key with the precision options: every published baseline folder (fp32 ones from
    before the options, and those trained in another precision) is the key of the record it holds."""
    from types import SimpleNamespace

    from suite.training.baseline import baseline_key

    metas = sorted(PUBLISHED.glob("baselines/*/*/meta.json"))
    if not metas:
        pytest.skip("no published runs in this checkout")
    for meta in metas:
        m = json.loads(meta.read_text())
        setting = SETTINGS.get(m["setting"]) or get_setting(str(PUBLISHED.parent / "settings" / f"{m['setting']}.toml"))
        key = baseline_key(
            setting, m["seed"], SimpleNamespace(fingerprint=m["data_fingerprint"]), Numerics.from_record(m)
        )
        assert key == meta.parent.name, meta


def test_the_same_layers_under_two_spellings_are_one_run():
    """The identity holds the resolved per-layer ratios, not the string that produced them."""
    a = replace(SETTINGS["fmnist-cnn4"], ratios="0.5")
    b = replace(SETTINGS["fmnist-cnn4"], ratios="[1-3:0.5]")
    assert _folder(a) == _folder(b)


def test_train_limit_changes_the_data_fingerprint(fmnist):
    """A baseline trained on 1,024 images must not be reused for 2,048 (the baseline key hashes it)."""
    assert fmnist.limit_train(1024).fingerprint != fmnist.limit_train(2048).fingerprint != fmnist.fingerprint


def test_test_limit_measures_on_the_first_images_and_names_the_data(fmnist):
    """tiny-fmnist is measured on the first 1,000 real test images; its fingerprint says so."""
    from suite.running.runner import load_data

    data = load_data(TINY, None)
    assert len(data.test) == 1000 and torch.equal(data.test.x, fmnist.test.x[:1000])
    assert torch.equal(data.test.y, fmnist.test.y[:1000]) and len(data.train) == 4096
    assert data.fingerprint == f"{fmnist.fingerprint}/train[:4096]/test[:1000]"
    assert load_data(replace(TINY, test_limit=None), None).fingerprint == f"{fmnist.fingerprint}/train[:4096]"


def test_each_purpose_draws_its_own_batches(small_fmnist):
    """Seed-0 regularization and fine-tuning never replay the batches the seed-0 baseline saw; the
    baseline stream keeps the plain seed, so published baselines still reproduce."""
    cpu = torch.device("cpu")
    first = {s: next(small_fmnist.train_batches(128, 0, 0, cpu, stream=s)) for s in STREAMS}
    for a in STREAMS:
        for b in STREAMS:
            if a < b:
                assert not torch.equal(first[a][1], first[b][1]), (a, b)
    assert stream_seed(0, "baseline") == 0 and stream_seed(5, "baseline") == 5
    # the baseline's order is the one published baselines were trained with: randperm under the plain seed
    g = torch.Generator().manual_seed((0 * 1_000_003 + 0) * 1_000_003 - 1)
    order = torch.randperm(len(small_fmnist.train), generator=g)[:128]
    assert torch.equal(first["baseline"][1], small_fmnist.train.y[order])


def test_fingerprint_ignores_docstrings_and_comments_not_code(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Module doc."""\ndef f(x):\n    """Doc."""\n    return x + 1  # note\n')
    b.write_text('"""Another doc."""\n# a comment\ndef f(x):\n    return x + 1\n')
    c.write_text("def f(x):\n    return x + 2\n")
    assert fingerprint.module_digest(a) == fingerprint.module_digest(b) != fingerprint.module_digest(c)


def test_every_method_module_enters_its_own_fingerprint():
    from methods import registry

    l1, greg1, nni = (type(registry.get(m)) for m in ("l1", "greg1", "nni-l1"))
    assert fingerprint.training_code(l1) != fingerprint.training_code(greg1) != fingerprint.training_code(nni)
    assert fingerprint.training_code(greg1) == fingerprint.training_code(type(registry.get("greg2")))


@pytest.fixture
def published(tmp_path):
    if not PUBLISHED.is_dir():
        pytest.skip("no published runs in this checkout")
    copy = tmp_path / "runs"
    shutil.copytree(PUBLISHED, copy, ignore=shutil.ignore_patterns("*.pt"))
    return copy


def test_migration_keeps_every_published_run_findable(published):
    def runs():
        return sorted(
            (r["method"], r["seed"], r["protocol"], r["ratios"], r["finished_at"], r.get("top1"))
            for r in (json.loads(p.read_text()) for p in published.glob("*/*/*/result.json"))
        )

    before = runs()
    assert migrate(published) == {}  # every published run is already where today's identity names it
    assert runs() == before
    after = list(published.glob("*/*/*/result.json"))
    for res in after:
        config = json.loads((res.parent / "config.json").read_text())
        job = job_of(config)
        # the job its record describes, planned today, names exactly this folder
        assert job.folder(published, config["data"]) == res.parent
        twin = json.loads(res.read_text()).get("same_training_as")
        if twin:  # the twin's record: its folder's result, or (retrained since) its superseded copy
            assert list((res.parent.parent / twin).glob("result.json")) + list(
                (res.parent.parent / twin).glob("superseded/*/result.json")
            )
    assert migrate(published) == {}  # a second pass moves nothing


def test_a_bf16_run_is_found_again_from_its_config():
    """migrate (and anything reading a stored config) rebuilds the job with its precision."""
    job = Job(TINY, "l1", resolve_hparams(TINY, "l1", None), 0, numerics=Numerics("bf16", channels_last=True))
    config = {
        **job.identity("fp"),
        "setting_definition": TINY.to_dict(),
        "hparams": job.hparams,
        **job.numerics.record(),
    }
    found = job_of(config).folder(Path("runs"), "fp")
    assert found == job.folder(Path("runs"), "fp") and found.name != _folder(TINY)


@pytest.mark.data
def test_a_run_of_older_training_code_is_flagged_then_recomputed_on_request(tmp_path, capsys):
    from suite.cli.commands import main

    runs = tmp_path / "runs"
    args = [
        "run",
        "--setting",
        str(TINY_FILE),
        "--methods",
        "l1",
        "--smoke",
        "--runs-dir",
        str(runs),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    (res,) = runs.glob("tiny-fmnist/l1/*/result.json")
    stored = json.loads(res.read_text())
    assert stored["training_code"] == stored_code(res)
    stored["training_code"] = "older"  # as a run trained before a change to the training loop would be
    res.write_text(json.dumps(stored))
    capsys.readouterr()
    assert main(args) == 0
    assert "STALE" in capsys.readouterr().out and json.loads(res.read_text())["training_code"] == "older"
    assert main(args + ["--recompute-stale"]) == 0
    kept = res.parent / "superseded" / "older" / "result.json"
    assert json.loads(kept.read_text())["training_code"] == "older"
    assert json.loads(res.read_text())["training_code"] == stored_code(res)
    assert "STALE" not in capsys.readouterr().out


def stored_code(res):
    from methods import registry

    return fingerprint.training_code(type(registry.get(json.loads(res.read_text())["method"])))
