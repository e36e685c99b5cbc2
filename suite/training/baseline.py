"""The trained, unpruned model of a setting: trained once per (setting, seed), cached by content hash.

Every method of a comparison starts from this same checkpoint (pruning from random weights
silently costs ~3 points: methods/GREG_SPEC.md, "Known reproduction traps").
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from suite.data.datasets import Data
from suite.errors import SuiteError
from suite.measure.metrics import machine, machine_text, machines_after
from suite.spec.settings import Setting
from suite.store.files import (
    RECIPE_VERSION,
    code_version,
    content_hash,
    job_lock,
    read_json,
    write_atomic,
    write_csv,
    write_json,
)
from suite.training.loop import Diverged, evaluate, load_checkpoint, recipe_trainer, save_atomic, train
from suite.training.numerics import FP32, Numerics


@dataclass
class Baseline:
    model: nn.Module
    top1: float
    key: str  # hash of the recipe that trains it, or "user-" + its weights' digest for a --baseline file
    path: Path
    digest: str  # weights_digest(model): which weights every run of a comparison started from


def baseline_key(setting: Setting, seed: int, data: Data, numerics: Numerics = FP32) -> str:
    """The baseline's name: what trains it, with its precision, layout and compilation only when
    they differ from fp32, contiguous and eager (so every stored fp32 baseline keeps its key)."""
    from suite.models.zoo import source_digest

    what = {
        "dataset": setting.dataset,
        "model": setting.model,
        "recipe": setting.baseline.to_dict(),
        "seed": seed,
        "data": data.fingerprint,
        "recipe_version": RECIPE_VERSION,
        **numerics.identity(),
    }
    model_code = source_digest(setting.at_root(setting.model))
    if model_code is not None:  # a user's model file: an edited model is another baseline
        what["model_code"] = model_code
    return content_hash(what)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a model's parameters and buffers, byte for byte.

    Two trainings with the same recipe give equal digests only if they ended with identical weights.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class NotReproduced(SuiteError):
    """A retrained baseline that is not the recorded one."""


def _threads(n) -> str:
    return "an unrecorded thread count" if n is None else f"{n} thread{'s' if n != 1 else ''}"


def _not_reproduced(folder: Path, what: str, recorded: dict, now: dict) -> NotReproduced:
    """The refusal, naming the machines on both sides (``now``: :func:`machine` of this training)
    and, when its thread count or processor differs from the record's, how to get the record back:
    training is bit-exact only per CPU model, instruction set and thread count."""
    rec_proc = machine_text(recorded)
    rec_threads = recorded.get("threads")  # baselines recorded before the thread count was have none
    fixes = []
    if rec_threads is not None and rec_threads != now["threads"]:
        fixes.append(f"rerun with --threads {rec_threads}")
    other_isa = recorded.get("isa") is not None and recorded["isa"] != now.get("isa")
    if recorded.get("processor") and (recorded["processor"] != now["processor"] or other_isa):
        fixes.append(f"retrain on a {rec_proc}")
    return NotReproduced(
        f"the retrained baseline in {folder} is not the recorded one: {what} (recorded with "
        f"{_threads(rec_threads)} on {rec_proc} with torch {recorded.get('torch')}, retrained with "
        f"{_threads(now['threads'])} on {machine_text(now)} with torch {torch.__version__}): training is bit-exact "
        f"only per CPU model, instruction set and thread count{'; ' + ' and '.join(fixes) if fixes else ''}. Runs stored in this "
        f"runs dir started from the recorded weights: put that model.pt back in the folder, or use another "
        f"--runs-dir for a fresh comparison."
    )


def check_reproduced(recorded: dict, top1: float, trained: dict, folder: Path) -> None:
    """Raise unless a retrained baseline matches the record that runs were stored against.

    Published runs before model.pt was committed keep only ``meta.json``, so a fresh clone retrains
    the baseline under the same key. Training is bit-exact on one CPU model, not across models
    (measured: Fashion-MNIST cnn4 90.28 on the machine that published it, 90.51 here), and a
    different baseline would silently mix two starting points in one comparison.
    """
    same_top1 = abs(float(recorded.get("top1", float("nan"))) - top1) < 1e-9
    same_weights = recorded.get("weights_sha256") in (None, trained["weights_sha256"])
    if not (same_top1 and same_weights):
        raise _not_reproduced(
            folder,
            f"top-1 {top1} vs {recorded.get('top1')}, weights {trained['weights_sha256']} "
            f"vs {recorded.get('weights_sha256', 'not recorded')}; the new weights are "
            f"kept as model.retrained.pt",
            recorded,
            trained,
        )


def follow_record(folder: Path, recorded: dict, device: torch.device):
    """An ``on_epoch_end`` check that stops a retraining at the first epoch whose test top-1 differs
    from the recorded log: a CPU that rounds differently shows it after one epoch, not one hour."""
    rows = {}
    if (folder / "log.csv").exists():
        with open(folder / "log.csv", newline="") as f:
            rows = {int(r["step"]): float(r["test_top1"]) for r in csv.DictReader(f) if r.get("test_top1")}

    def check(row: dict) -> None:
        want = rows.get(int(row["step"]))
        if want is not None and abs(want - row["test_top1"]) > 1e-9:
            raise _not_reproduced(
                folder,
                f"epoch {row['epoch']:g} gives test top-1 {row['test_top1']} where the record has {want}",
                recorded,
                machine(device),
            )

    return check


def load_user_baseline(
    setting: Setting, path: Path, data: Data, device: torch.device, numerics: Numerics = FP32
) -> Baseline:
    """A user's own checkpoint (a state_dict, loaded weights_only) for the setting's model, its
    top-1 measured in the run's numerics."""
    if not path.is_file():
        raise SuiteError(f"--baseline {path}: no such file")
    save_hint = "save it with torch.save(model.state_dict(), PATH)"
    try:  # not load_checkpoint: its advice (delete it) is for the suite's own checkpoints, not the user's file
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SuiteError(
            f"--baseline {path} is corrupt or not a weights-only PyTorch file ({type(e).__name__}): {save_hint}"
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SuiteError(f"--baseline {path} holds a {type(state).__name__}, not a state_dict of tensors: {save_hint}")
    model = setting.build_model()
    mismatch = state_dict_mismatch(model.state_dict(), state)
    if mismatch:
        raise SuiteError(
            f"--baseline {path} does not match model {setting.model} of setting {setting.name}: {mismatch}"
        )
    model.load_state_dict(state)
    model.to(device)
    top1 = evaluate(model, data.eval_batches("test", 500, device), device, numerics)["top1"]
    digest = weights_digest(model)
    return Baseline(model, top1, "user-" + digest, path, digest)


def state_dict_mismatch(want: dict, got: dict, show: int = 3) -> str:
    """What differs between a model's state_dict and a loaded one, in one line ("" when they fit):
    torch's own message spreads the detail over several lines, and its first line names none."""

    def listed(items):
        return ", ".join(items[:show]) + (f" and {len(items) - show} more" if len(items) > show else "")

    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    shapes = [
        f"{k} {tuple(got[k].shape)} where the model has {tuple(want[k].shape)}"
        for k in want
        if k in got and got[k].shape != want[k].shape
    ]
    parts = [
        f"{len(missing)} missing key(s) ({listed(missing)})" if missing else "",
        f"{len(unexpected)} unexpected key(s) ({listed(unexpected)})" if unexpected else "",
        f"{len(shapes)} shape mismatch(es) ({listed(shapes)})" if shapes else "",
    ]
    return "; ".join(p for p in parts if p)


def get_baseline(
    setting: Setting,
    data: Data,
    seed: int,
    runs_dir: Path,
    device: torch.device,
    smoke: bool = False,
    numerics: Numerics = FP32,
) -> Baseline:
    """Load the cached baseline or train it (resuming a killed training) and cache it."""
    key = baseline_key(setting, seed, data, numerics) + ("-smoke" if smoke else "")
    folder = runs_dir / "baselines" / setting.name / key
    with job_lock(folder):
        model = setting.build_model()
        final = folder / "model.pt"
        if final.exists():
            model.load_state_dict(load_checkpoint(final))
            meta = read_json(folder / "meta.json")
            return Baseline(model.to(device), meta["top1"], key, final, weights_digest(model))
        refused = folder / "not-reproduced.txt"  # the refusal, then the machine that tried
        here = machine(device)
        refusal = _refusal(refused)
        if refusal is not None and refusal[1] in (None, here):
            # fail at once: retraining on this machine, with these threads, would differ again
            raise SuiteError(f"an earlier try on this machine said: {refusal[0]} (delete {refused} to retrain anyway)")
        # A record without weights: a published runs dir on a new machine. Retrain and check.
        recorded = read_json(folder / "meta.json") if (folder / "meta.json").exists() else None
        try:
            model, top1, outcome, trained = _train(setting, data, seed, folder, device, smoke, recorded, numerics)
        except NotReproduced as e:
            write_atomic(refused, f"{e}\n{json.dumps(here)}\n")
            _drop_checkpoint(folder)
            raise
        except Diverged as e:  # say what happened to the baseline: it is not stored
            _drop_checkpoint(folder)  # resuming it would diverge again
            raise Diverged(
                f"{e}: the baseline of setting {setting.name} diverged and is not stored; lower "
                f"the setting's [baseline] lr and run again"
            ) from None
        if recorded is None:
            write_csv(folder / "log.csv", outcome.history)
            write_json(
                folder / "meta.json",
                {
                    "setting": setting.name,
                    "seed": seed,
                    "top1": top1,
                    "recipe": setting.baseline.to_dict(),
                    "data_fingerprint": data.fingerprint,
                    "steps": outcome.steps,
                    "smoke": smoke,
                    **numerics.record(),
                    **trained,
                },
            )
        else:  # the record the runs cite stays as it was; the retraining is added beside it
            write_json(folder / "meta.json", {**recorded, "reproduced": recorded.get("reproduced", []) + [trained]})
        save_atomic(model.state_dict(), final)  # written last: its presence means "done"
        _drop_checkpoint(folder)
        refused.unlink(missing_ok=True)  # another machine's (or thread count's) refusal: this one reproduced it
        return Baseline(model, top1, key, final, trained["weights_sha256"])


def _refusal(path: Path) -> tuple[str, dict | None] | None:
    """A stored refusal: its message and the machine (:func:`machine`) whose retraining wrote it, or
    None when there is none. Another thread count or CPU may reproduce the record, so the refusal
    holds for its own machine only; one that does not name it (written before it did, or edited)
    holds for every machine."""
    if not path.exists():
        return None
    said, _, tried = path.read_text().partition("\n")
    try:
        on = json.loads(tried or "null")
    except ValueError:
        on = None
    return said, on if isinstance(on, dict) else None


def _machines_so_far(folder: Path, here: dict) -> list[dict]:
    """Every machine (processor, instruction set, threads) that has trained this baseline's
    checkpoint, in order, ending with ``here``; kept in ``machines.json`` so that a training resumed
    in a session on another CPU is recorded as trained by both, not by the last alone."""
    path = folder / "machines.json"
    history = read_json(path) if (folder / "train.ckpt").exists() and path.exists() else []
    machines = machines_after(history, here)
    if machines is not history:
        write_json(path, machines)
    return machines


def _drop_checkpoint(folder: Path) -> None:
    """Delete a training's checkpoint and the list of machines that made it (its record has them)."""
    for name in ("train.ckpt", "machines.json"):
        (folder / name).unlink(missing_ok=True)


def _train(
    setting: Setting,
    data: Data,
    seed: int,
    folder: Path,
    device: torch.device,
    smoke: bool,
    recorded: dict | None,
    numerics: Numerics,
):
    """Train the baseline; with a record, follow its log epoch by epoch and check the end result."""
    torch.manual_seed(seed)
    model = setting.build_model()  # built after seeding: its init depends only on the seed
    t0 = time.time()
    kw = recipe_trainer(
        setting.baseline,
        data,
        device,
        seed,
        checkpoint=folder / "train.ckpt",
        desc=f"baseline {setting.name}",
        stream="baseline",
        on_epoch_end=follow_record(folder, recorded, device) if recorded else None,
        numerics=numerics,
    )
    if smoke:
        kw["total_steps"] = min(kw["total_steps"], 20)
    trained_by = _machines_so_far(folder, machine(device))
    outcome = train(model, data, **kw)
    top1 = evaluate(model, data.eval_batches("test", 500, device), device, numerics)["top1"]
    trained = {
        "code_version": code_version(),
        "torch": torch.__version__,
        "device": str(device),
        **machine(device),
        "weights_sha256": weights_digest(model),
        "train_seconds": outcome.seconds,
        "wall_seconds": time.time() - t0,
    }
    if len(trained_by) > 1:
        trained["machines"] = trained_by
    if outcome.compile_failure:
        trained["compile_failure"] = outcome.compile_failure
    if recorded is not None:
        try:
            check_reproduced(recorded, top1, trained, folder)
        except NotReproduced:
            save_atomic(model.state_dict(), folder / "model.retrained.pt")
            raise
    return model, top1, outcome, trained
