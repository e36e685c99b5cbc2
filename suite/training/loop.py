"""The one training loop: SGD with momentum and weight decay, piecewise lr, per-iteration hooks,
per-epoch evaluation, and checkpoints that let a killed run resume bit-exactly on CPU.

Baseline training, a method's regularization phase and fine-tuning all run through :func:`train`,
so every method's iterations are counted and timed the same way.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from suite.data.datasets import Data
from suite.errors import SuiteError
from suite.training.numerics import FP32, Numerics, compile_failure
from suite.training.progress import Progress


@dataclass(frozen=True)
class Recipe:
    """A training schedule: ``lr`` maps the first epoch of each piece to its learning rate,
    like the paper's ``lr_ft`` {0: 0.01, 60: 0.001, 90: 0.0001}."""

    epochs: int
    batch_size: int
    lr: dict[int, float]
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self):
        """Type and range checks, so a bad recipe is a one-line error before any data is loaded;
        messages name the field and value (the caller adds the file and the section)."""
        for name, low in (("epochs", 1), ("batch_size", 1)):
            v = getattr(self, name)
            if not is_int(v) or v < low:
                raise SuiteError(f"{name} = {v!r}: must be an integer >= {low}")
        if not is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise SuiteError(f"momentum = {self.momentum!r}: must be a number in [0, 1)")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise SuiteError(f"weight_decay = {self.weight_decay!r}: must be a finite number >= 0")
        allowed = "a table {first epoch: lr} like { 0 = 0.01, 60 = 0.001 }, epochs integers >= 0, lrs finite > 0"
        if not isinstance(self.lr, dict) or not self.lr:
            raise SuiteError(f"lr = {self.lr!r}: must be {allowed}")
        lr = {}
        for k, v in self.lr.items():
            if not (is_int(k) and k >= 0 or isinstance(k, str) and k.strip().isascii() and k.strip().isdigit()):
                raise SuiteError(f"lr = {self.lr!r}: epoch {k!r} is not an integer >= 0; must be {allowed}")
            if not is_number(v) or v <= 0:
                raise SuiteError(
                    f"lr = {self.lr!r}: lr {v!r} of epoch {k} is not a finite number > 0; must be {allowed}"
                )
            lr[int(k)] = float(v)
        if 0 not in lr:
            raise SuiteError(f"lr = {self.lr!r}: must give the lr of epoch 0 (first key 0)")
        object.__setattr__(self, "lr", dict(sorted(lr.items())))
        object.__setattr__(self, "momentum", float(self.momentum))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))

    def lr_at(self, epoch: int) -> float:
        return [v for k, v in self.lr.items() if k <= epoch][-1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lr"] = {str(k): v for k, v in self.lr.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        if not isinstance(d, dict):
            raise SuiteError(f"{d!r}: must be a table with epochs, batch_size, lr (momentum, weight_decay optional)")
        fields = set(cls.__dataclass_fields__)
        if set(d) - fields or {"epochs", "batch_size", "lr"} - set(d):
            raise SuiteError(
                f"has fields {sorted(d)}; required: epochs, batch_size, lr; optional: momentum, weight_decay"
            )
        return cls(**d)


def is_int(v) -> bool:
    """An int, not a bool (True is an int to Python, never an epoch count to a user)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A finite int or float (not a bool, not a numeric string)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Hook(Protocol):
    """What a method (or the mask keeper) plugs into the loop, called at every iteration."""

    def after_backward(self, model: nn.Module, step: int) -> None:
        """Gradients are computed, the optimizer has not stepped: add penalty gradients here."""

    def after_step(self, model: nn.Module, step: int) -> bool:
        """The optimizer has stepped. Return True to end training after this iteration."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Diverged(SuiteError):
    """The loss became NaN or infinite (e.g. a penalty that blew up)."""


@dataclass
class Outcome:
    steps: int  # iterations run in this phase (including those before a resume)
    epochs_done: float
    history: list[dict] = field(default_factory=list)  # one row per epoch (and per log point)
    stopped_by_hook: bool = False
    seconds: float = 0.0
    compile_failure: str | None = None  # --compile fell back to eager, and why


def pick_device(name: str | None = None) -> torch.device:
    """``cuda`` when present (or asked for), else ``cpu``: nothing here assumes a GPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SuiteError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SuiteError(f"--device {name}: not a device; use cuda, cuda:N, cpu or auto") from None


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temp file then rename: a reader never sees half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(
    model: nn.Module,
    data: Data,
    *,
    lr: Callable[[int], float],
    batch_size: int,
    momentum: float,
    weight_decay: float,
    device: torch.device,
    seed: int,
    stream: str,
    total_steps: int | None = None,
    hooks: tuple = (),
    checkpoint: Path | None = None,
    checkpoint_every: int | None = None,
    eval_split: str | None = "test",
    on_epoch_end: Callable[[dict], None] | None = None,
    desc: str = "train",
    log_every: int | None = None,
    log_extra: Callable[[], dict] | None = None,
    expected_steps: int | None = None,
    numerics: Numerics = FP32,
) -> Outcome:
    """Train ``model`` in place with SGD.

    Runs until ``total_steps`` iterations, or until a hook's ``after_step`` returns True (then
    ``total_steps`` is a cap). ``lr(epoch)`` gives the learning rate. The batch order depends only
    on (stream, seed, epoch, batch index) (``stream``: what the pass is for, see
    ``suite.data.split.STREAMS``), and model, optimizer, position, hook state and history are
    checkpointed every ``checkpoint_every`` steps and at each epoch end, so a killed run resumes
    from ``checkpoint`` and ends with the same weights as an uninterrupted one.
    ``checkpoint_every`` defaults to $SUITE_CHECKPOINT_EVERY or 500 iterations.
    ``expected_steps``: the iterations a phase that a hook ends is planned to run; it only sets the
    total and ETA that progress shows (default: ``total_steps``). Progress: see :mod:`suite.training.progress`.

    ``numerics`` (:mod:`suite.training.numerics`): the forward and loss run under its autocast, on its
    memory layout, through its compiled model; parameters, gradients and the optimizer stay
    float32. Under fp16 the loss is scaled and the gradients unscaled *before* the hooks' after_backward,
    so a hook always adds to the true float32 gradient; a step the scaler skips (inf/NaN gradients)
    still counts as an iteration for the hooks' schedules. fp32 runs the very same operations as
    before these options existed.
    """
    checkpoint_every = checkpoint_every or int(os.environ.get("SUITE_CHECKPOINT_EVERY", 500))
    model.to(device).train()
    numerics.layout(model)
    forward = numerics.forward(model, desc)
    scaler = numerics.grad_scaler(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr(0), momentum=momentum, weight_decay=weight_decay)
    bpe = data.batches_per_epoch(batch_size)
    if bpe == 0:
        raise SuiteError(f"batch size {batch_size} is larger than the training set")
    step, history, stopped, seconds = 0, [], False, 0.0
    running, seen = 0.0, 0  # loss sum and count since the last log row
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scaler is not None:
            scaler.load_state_dict(state["scaler"])
        for h, s in zip(hooks, state["hooks"]):
            h.load_state_dict(s)
        step, history, stopped, seconds = state["step"], state["history"], state["stopped"], state["seconds"]
        running, seen = state["running"]
        torch.set_rng_state(state["rng"])
    cap = total_steps if total_steps is not None else math.inf
    if cap == math.inf and not hooks:
        raise SuiteError("train() needs total_steps or a hook that ends training")

    def save():
        if checkpoint is not None:
            save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "hooks": [h.state_dict() for h in hooks],
                    "history": history,
                    "stopped": stopped,
                    "seconds": seconds + time.perf_counter() - t0,
                    "rng": torch.get_rng_state(),
                    "running": (running, seen),
                    "scaler": scaler.state_dict() if scaler else None,
                },
                checkpoint,
            )

    t0 = time.perf_counter()
    progress = Progress(desc, total=expected_steps or total_steps, done=step, steps_per_epoch=bpe)
    while not stopped and step < cap:
        epoch, start = divmod(step, bpe)
        for g in opt.param_groups:
            g["lr"] = lr(epoch)
        for x, y in data.train_batches(batch_size, seed, epoch, device, stream=stream, start=start):
            with numerics.autocast(device):
                loss = nn.functional.cross_entropy(forward(numerics.batch(x)), y)
            if not torch.isfinite(loss):
                raise Diverged(f"{desc}: loss became {loss.item()} at iteration {step} (lr {lr(epoch)})")
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)  # the hooks below see (and add to) the true gradients
            for h in hooks:
                h.after_backward(model, step)
            if scaler is None:
                opt.step()
            else:
                scaler.step(opt)
                scaler.update()
            step += 1
            stopped = any([h.after_step(model, step) for h in hooks])  # every hook sees every step
            value = loss.item()
            running += value
            seen += 1
            progress.step(value, lr(epoch), len(y))
            if log_every and step % log_every == 0:
                history.append(
                    {
                        "phase": desc,
                        "step": step,
                        "epoch": step / bpe,
                        "lr": lr(epoch),
                        "loss": running / seen,
                        **(log_extra() if log_extra else {}),
                    }
                )
                running, seen = 0.0, 0
            if stopped or step >= cap:
                break
            if step % bpe == 0:
                break
            if step % checkpoint_every == 0:
                save()
        if step % bpe == 0 or stopped or step >= cap:
            row = {"phase": desc, "step": step, "epoch": step / bpe, "lr": lr(epoch)}
            if seen:
                row["loss"] = running / seen
            running, seen = 0.0, 0
            if eval_split and step % bpe == 0:
                metrics = evaluate(model, data.eval_batches(eval_split, 500, device), device, numerics)
                row.update({f"{eval_split}_top1": metrics["top1"], f"{eval_split}_loss": metrics["loss"]})
            if log_extra:
                row.update(log_extra())
            history.append(row)
            progress.row(row)
            save()
            if on_epoch_end is not None and step % bpe == 0:
                on_epoch_end(row)
    progress.close()
    seconds += time.perf_counter() - t0
    return Outcome(step, step / bpe, history, stopped, seconds, compile_failure(model))


def load_checkpoint(path: Path) -> dict:
    """Load a training checkpoint (weights_only: a checkpoint can never run code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SuiteError(
            f"checkpoint {path} is corrupt or not a weights-only file ({type(e).__name__}); "
            f"delete it to restart that phase"
        ) from None


def evaluate(model: nn.Module, batches, device: torch.device, numerics: Numerics = FP32) -> dict:
    """Top-1/top-5 accuracy (percent) and mean cross-entropy over ``batches`` of (x, y), under
    ``torch.inference_mode`` and the run's numerics (the loss summed in float32)."""
    was_training = model.training
    model.eval()
    numerics.layout(model)  # outside inference mode: the parameters must stay usable for training
    forward = numerics.forward(model)
    n = correct1 = correct5 = 0
    loss = 0.0
    with torch.inference_mode():
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with numerics.autocast(device):
                logits = forward(numerics.batch(x)).float()
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += (top[:, 0] == y).sum().item()
            correct5 += (top == y[:, None]).any(dim=1).sum().item()
            n += y.numel()
    model.train(was_training)
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss / n, "n": n}


def recipe_trainer(recipe: Recipe, data: Data, device: torch.device, seed: int, **kw):
    """Keyword arguments for :func:`train` that run ``recipe`` to its last epoch."""
    return dict(
        lr=recipe.lr_at,
        batch_size=recipe.batch_size,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        device=device,
        seed=seed,
        total_steps=recipe.epochs * data.batches_per_epoch(recipe.batch_size),
        **kw,
    )
