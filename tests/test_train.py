"""The training loop: lr schedule, hooks, and a killed run resuming bit-exactly on CPU."""

import pytest
import torch

from suite.errors import SuiteError
from suite.models.nets import build_model
from suite.training.loop import Diverged, Recipe, train

CPU = torch.device("cpu")


def test_piecewise_lr_like_lr_ft():
    r = Recipe(120, 128, {"0": 0.01, "60": 0.001, "90": 0.0001})
    assert [r.lr_at(e) for e in (0, 59, 60, 89, 90, 119)] == [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
    with pytest.raises(SuiteError, match="epoch 0"):
        Recipe(10, 128, {5: 0.1})


class _Kill(Exception):
    pass


class _KillAt:
    """Dies (like SIGKILL would) right after step ``at``; checkpoints before it are all that survive."""

    def __init__(self, at):
        self.at = at

    def after_backward(self, model, step):
        pass

    def after_step(self, model, step):
        if step == self.at:
            raise _Kill
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


def _run(data, ckpt, hooks=(), steps=40):
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    out = train(
        model,
        data,
        lr=lambda e: 0.05 if e == 0 else 0.01,
        batch_size=128,
        momentum=0.9,
        weight_decay=5e-4,
        device=CPU,
        seed=7,
        stream="baseline",
        total_steps=steps,
        hooks=hooks,
        checkpoint=ckpt,
        checkpoint_every=5,
        eval_split="test",
    )
    return model, out


def test_killed_run_resumes_bit_exactly(small_fmnist, tmp_path):
    ref, ref_out = _run(small_fmnist, None)
    ckpt = tmp_path / "t.ckpt"
    with pytest.raises(_Kill):
        _run(small_fmnist, ckpt, hooks=(_KillAt(23),))  # mid-epoch 1 (16 batches per epoch)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 20  # the last checkpoint before the kill
    resumed, out = _run(small_fmnist, ckpt)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert out.steps == ref_out.steps == 40
    assert [r["test_top1"] for r in out.history if "test_top1" in r] == [
        r["test_top1"] for r in ref_out.history if "test_top1" in r
    ]


def test_training_learns_on_real_data(small_fmnist):
    model, out = _run(small_fmnist, None, steps=48)
    assert out.history[-1]["test_top1"] > 50  # 3 epochs on 2k images, chance is 10


class _Poison(_KillAt):
    """Turns one weight into inf at step ``at``, as a penalty that blew up would."""

    def after_step(self, model, step):
        if step == self.at:
            with torch.no_grad():
                model.classifier.weight[0, 0] = float("inf")
        return False


def test_nan_loss_is_reported(small_fmnist):
    model = build_model("cnn4", 10, 1)
    with pytest.raises(Diverged, match="loss became nan at iteration 3"):
        train(
            model,
            small_fmnist,
            lr=lambda e: 0.01,
            batch_size=128,
            momentum=0.9,
            weight_decay=0,
            device=CPU,
            seed=0,
            stream="baseline",
            total_steps=30,
            hooks=(_Poison(3),),
            eval_split=None,
        )


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("epochs", 0, "epochs = 0: must be an integer >= 1"),
        ("epochs", -2, "epochs = -2"),
        ("epochs", "ten", "epochs = 'ten'"),
        ("epochs", True, "epochs = True"),
        ("batch_size", 0, "batch_size = 0: must be an integer >= 1"),
        ("batch_size", 1.5, "batch_size = 1.5"),
        ("momentum", "x", "momentum = 'x': must be a number in \\[0, 1\\)"),
        ("momentum", 1.0, "momentum = 1.0"),
        ("momentum", float("nan"), "momentum = nan"),
        ("weight_decay", -1e-4, "weight_decay = -0.0001"),
        ("weight_decay", float("inf"), "weight_decay = inf"),
        ("lr", 0.01, "lr = 0.01: must be a table"),
        ("lr", {}, "lr = {}: must be a table"),
        ("lr", {"x": 0.01}, "epoch 'x' is not an integer"),
        ("lr", {"0": "fast"}, "lr 'fast' of epoch 0"),
        ("lr", {0: -0.01}, "lr -0.01 of epoch 0"),
        ("lr", {0: 0.0}, "lr 0.0 of epoch 0"),
        ("lr", {0: float("nan")}, "lr nan of epoch 0"),
        ("lr", {0: 0.1, -5: 0.01}, "epoch -5 is not an integer"),
    ],
)
def test_recipe_refuses_bad_values_naming_field_and_value(field, value, says):
    good = {"epochs": 2, "batch_size": 8, "lr": {0: 0.1}}
    with pytest.raises(SuiteError, match=says):
        Recipe.from_dict({**good, field: value})


def test_recipe_from_dict_refuses_missing_and_unknown_fields():
    with pytest.raises(SuiteError, match="required: epochs, batch_size, lr"):
        Recipe.from_dict({"epochs": 2, "lr": {0: 0.1}})
    with pytest.raises(SuiteError, match="'bogus'"):
        Recipe.from_dict({"epochs": 2, "batch_size": 8, "lr": {0: 0.1}, "bogus": 1})
    r = Recipe.from_dict({"epochs": 2, "batch_size": 8, "lr": {"0": 1, "1": 0.5}, "momentum": 0})
    assert r.lr == {0: 1.0, 1: 0.5} and r.momentum == 0.0
