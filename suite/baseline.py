"""The trained, unpruned model of a setting: trained once per (setting, seed), cached by content hash.

Every method of a comparison starts from this same checkpoint (pruning from random weights
silently costs ~3 points: GREG_SPEC.md, "Known reproduction traps").
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from suite.data import Data
from suite.errors import SuiteError
from suite.measure import evaluate
from suite.settings import Setting
from suite.store import RECIPE_VERSION, code_version, content_hash, job_lock, read_json, write_csv, write_json
from suite.train import load_checkpoint, recipe_trainer, save_atomic, train


@dataclass
class Baseline:
    model: nn.Module
    top1: float
    key: str  # content hash ("user" for a --baseline file)
    path: Path


def baseline_key(setting: Setting, seed: int, data: Data) -> str:
    return content_hash({"dataset": setting.dataset, "model": setting.model, "recipe": setting.baseline.to_dict(),
                         "seed": seed, "data": data.fingerprint, "recipe_version": RECIPE_VERSION})


def load_user_baseline(setting: Setting, path: Path, data: Data, device: torch.device) -> Baseline:
    """A user's own checkpoint (a state_dict, loaded weights_only) for the setting's model."""
    if not path.is_file():
        raise SuiteError(f"--baseline {path}: no such file")
    state = load_checkpoint(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    model = setting.build_model()
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SuiteError(f"--baseline {path} does not match model {setting.model} of setting {setting.name}: "
                         f"{first}") from None
    model.to(device)
    top1 = evaluate(model, data.eval_batches("test", 500, device), device)["top1"]
    return Baseline(model, top1, "user-" + content_hash({"file": str(path.resolve()), "size": path.stat().st_size}),
                    path)


def get_baseline(setting: Setting, data: Data, seed: int, runs_dir: Path, device: torch.device,
                 smoke: bool = False) -> Baseline:
    """Load the cached baseline or train it (resuming a killed training) and cache it."""
    key = baseline_key(setting, seed, data) + ("-smoke" if smoke else "")
    folder = runs_dir / "baselines" / setting.name / key
    with job_lock(folder):
        model = setting.build_model()
        final = folder / "model.pt"
        if final.exists():
            model.load_state_dict(load_checkpoint(final))
            meta = read_json(folder / "meta.json")
            return Baseline(model.to(device), meta["top1"], key, final)
        torch.manual_seed(seed)
        model = setting.build_model()  # re-built after seeding: its init depends only on the seed
        t0 = time.time()
        kw = recipe_trainer(setting.baseline, data, device, seed, checkpoint=folder / "train.ckpt",
                            desc=f"baseline {setting.name}")
        if smoke:
            kw["total_steps"] = min(kw["total_steps"], 20)
        outcome = train(model, data, **kw)
        top1 = evaluate(model, data.eval_batches("test", 500, device), device)["top1"]
        write_csv(folder / "log.csv", outcome.history)
        write_json(folder / "meta.json", {
            "setting": setting.name, "seed": seed, "top1": top1, "recipe": setting.baseline.to_dict(),
            "data_fingerprint": data.fingerprint, "steps": outcome.steps, "train_seconds": outcome.seconds,
            "wall_seconds": time.time() - t0, "code_version": code_version(), "torch": torch.__version__,
            "device": str(device), "smoke": smoke})
        save_atomic(model.state_dict(), final)  # written last: its presence means "done"
        (folder / "train.ckpt").unlink(missing_ok=True)
        return Baseline(model, top1, key, final)
