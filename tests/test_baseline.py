"""The shared baseline: cached by content, and a record without weights retrained and checked."""
import json
from pathlib import Path

import pytest
import torch

from suite.baseline import get_baseline, weights_digest
from suite.errors import SuiteError
from suite.measure import processor
from suite.settings import get_setting

TINY = str(Path(__file__).parent / "data" / "tiny-fmnist.toml")
CPU = torch.device("cpu")


@pytest.fixture
def trained(small_fmnist, tmp_path):
    """A 20-iteration baseline of the tiny setting, then its weights deleted as in a published runs dir."""
    setting = get_setting(TINY)
    first = get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)
    first.path.unlink()
    return setting, first, first.path.parent


def test_digest_sees_one_changed_weight():
    torch.manual_seed(0)
    model = get_setting(TINY).build_model()
    before = weights_digest(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-7
    assert weights_digest(model) != before


def test_record_without_weights_is_retrained_and_kept(trained, small_fmnist, tmp_path):
    setting, first, folder = trained
    recorded = json.loads((folder / "meta.json").read_text())
    again = get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)
    assert again.top1 == first.top1 and again.key == first.key
    meta = json.loads((folder / "meta.json").read_text())
    assert {k: v for k, v in meta.items() if k != "reproduced"} == recorded  # the cited record is untouched
    assert meta["reproduced"][0]["weights_sha256"] == recorded["weights_sha256"] == weights_digest(again.model)
    assert again.path.exists()
    assert recorded["processor"] == meta["reproduced"][0]["processor"] == processor(CPU) != ""


def test_retraining_that_differs_stops_with_the_fix(trained, small_fmnist, tmp_path):
    setting, first, folder = trained
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "top1": meta["top1"] + 1}))  # as if trained elsewhere
    with pytest.raises(SuiteError, match=r"differs from its record: top-1 .*trained now on .*put that model.pt back"):
        get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)
    assert (folder / "model.retrained.pt").exists() and not (folder / "model.pt").exists()
    assert json.loads((folder / "meta.json").read_text())["top1"] == meta["top1"] + 1
    with pytest.raises(SuiteError, match="earlier retraining"):  # fails at once, no second hour of training
        get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)
