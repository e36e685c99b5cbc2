"""The phases of one job, each a typed function: prune, apply, fine-tune, measure.

``execute`` runs them in order for a job whose baseline is at hand (planning is ``suite.spec.plan``,
the baseline ``suite.training.baseline``, storing the result ``suite.running.runner``). Every
method passes through the same phases: the method decides what goes (``prune``, with its own
training counted here, sample by sample), one surgery removes it (``apply``), the setting's recipe
fine-tunes it (``finetune``) and one measurement reads it (``measure``). A phase that finished is
found in the run folder when a killed job resumes (``pruned.pt`` and the loop's checkpoints).
Latency is not a phase here: wall-clock timing is not training code, so the runner times the
model ``execute`` returns (``suite.measure.metrics.latency_block``), and a change to the timing
never makes a stored run stale.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from methods.base import PruneTask, Pruning
from suite.data.datasets import Data
from suite.models.nets import example_input
from suite.models.size import count_flops, count_params
from suite.models.surgery import MaskKeeper, sparsity
from suite.training.loop import Outcome, evaluate, load_checkpoint, save_atomic, train
from suite.training.numerics import compile_failure
from suite.training.schedule import lr_milestones, prune_cap, stretched_lr

if TYPE_CHECKING:  # annotations only: planning and the baseline store are not training code
    from suite.spec.plan import Job
    from suite.training.baseline import Baseline


@dataclass
class Workspace:
    """What every phase of one job reads: the job, its data and device, its run folder, the split
    accuracies are measured on during the job (``val`` in a search) and a per-epoch callback (a
    search trial's pruner)."""

    job: Job
    data: Data
    device: torch.device
    folder: Path
    eval_split: str = "test"
    on_epoch_end: Callable[[dict], None] | None = None

    @property
    def example(self) -> torch.Tensor:
        shape = self.job.setting.input_shape
        return example_input(shape[0], shape[1:])

    def top1(self, model: nn.Module) -> float:
        return evaluate(
            model, self.data.eval_batches(self.eval_split, 500, self.device), self.device, self.job.numerics
        )["top1"]


@dataclass
class OwnTraining:
    """What a method's own passes consumed, counted by the harness (a method cannot under-report)."""

    iters: int = 0
    samples: int = 0
    capped: bool = False  # a pass ran into the setting's cap before its schedule was done


@dataclass
class Choice:
    """The prune phase's outcome: what goes, the accuracy before removal, the method's log rows."""

    pruning: Pruning
    acc_before: float
    own: OwnTraining
    log: list[dict] = field(default_factory=list)


def prune(ws: Workspace, model: nn.Module) -> Choice:
    """Let the method choose (training ``model`` in place first if it trains), or find the choice
    a killed run stored in ``pruned.pt``."""
    job = ws.job
    pruned_file = ws.folder / "pruned.pt"
    if pruned_file.exists():
        saved = load_checkpoint(pruned_file)
        model.load_state_dict(saved["model"])
        own = saved["own"]
        return Choice(
            Pruning(saved["filters"], saved["masks"], info=saved["info"]),
            saved["acc_before_removal"],
            OwnTraining(own["iters"], own["samples"], own["capped"]),
            saved["log"],
        )
    torch.manual_seed(job.seed)
    own, log = OwnTraining(capped=not job.schedule_fits()), []
    pruning = job.impl.prune(model, _task(ws, model, own, log), job.hp)
    choice = Choice(pruning, ws.top1(model), own, log)
    save_atomic(
        {
            "model": model.state_dict(),
            "filters": pruning.filters,
            "masks": pruning.masks,
            "info": pruning.info,
            "acc_before_removal": choice.acc_before,
            "log": log,
            "own": {"iters": own.iters, "samples": own.samples, "capped": own.capped},
        },
        pruned_file,
    )
    return choice


def _task(ws: Workspace, model: nn.Module, own: OwnTraining, log: list) -> PruneTask:
    """The PruneTask a method receives: the setting's regularization loop and batch stream, both
    counting into ``own``."""
    job, s = ws.job, ws.job.setting
    cap = prune_cap(s.prune.max_iters, job.smoke)

    def run_phase(hooks, desc, log_every=None, log_extra=None) -> Outcome:
        outcome = train(
            model,
            ws.data,
            lr=lambda e: s.prune.lr,
            batch_size=s.prune.batch_size,
            momentum=s.prune.momentum,
            weight_decay=s.prune.weight_decay,
            device=ws.device,
            seed=job.seed,
            stream="own",
            total_steps=cap,
            hooks=hooks,
            checkpoint=ws.folder / "own.ckpt",
            eval_split=None,
            desc=desc,
            log_every=log_every,
            log_extra=log_extra,
            expected_steps=job.planned_prune_iters() or None,
            numerics=job.numerics,
        )
        log.extend(outcome.history)
        own.iters += outcome.steps
        own.samples += outcome.steps * s.prune.batch_size
        own.capped |= bool(hooks) and not outcome.stopped_by_hook
        return outcome

    def batches(n):
        stream = itertools.chain.from_iterable(
            ws.data.train_batches(s.prune.batch_size, job.seed, e, ws.device, stream="own") for e in itertools.count()
        )
        for x, y in itertools.islice(stream, n):
            own.iters += 1
            own.samples += len(y)
            yield x, y

    ratios = job.describe(ws.data.fingerprint).model.layers  # the layers its run description names
    groups = {}
    if job.impl.granularity == "filter":
        groups = {n: g for n, g in s.layout.groups(model, ws.example).items() if n in ratios}
    return PruneTask(
        layer_ratios=ratios,
        device=ws.device,
        seed=job.seed,
        max_iters=cap,
        train=run_phase,
        batches=batches,
        example=ws.example,
        groups=groups,
    )


def apply(ws: Workspace, model: nn.Module, pruning: Pruning) -> MaskKeeper | None:
    """One surgery for every method: filters removed physically, or a mask kept during fine-tuning
    (returned, to be passed to the fine-tuning loop as a hook)."""
    if pruning.filters is not None:
        ws.job.setting.layout.remove(model, pruning.filters, ws.example)
        model.to(ws.device)
        return None
    return MaskKeeper(model, pruning.masks)


def finetune(ws: Workspace, model: nn.Module, keeper: MaskKeeper | None, own: OwnTraining) -> Outcome:
    """The setting's recipe, identical for every method; under an equal-sample budget as long as
    the method's own training left, on the recipe's schedule stretched to that length."""
    job, ft = ws.job, ws.job.setting.finetune
    bpe = ws.data.batches_per_epoch(ft.batch_size)
    steps = job.finetune_steps(own.samples, bpe)
    return train(
        model,
        ws.data,
        lr=stretched_lr(ft.lr_at, ft.epochs, steps, bpe),
        batch_size=ft.batch_size,
        momentum=ft.momentum,
        weight_decay=ft.weight_decay,
        device=ws.device,
        seed=job.seed,
        stream="finetune",
        total_steps=steps,
        hooks=(keeper,) if keeper else (),
        checkpoint=ws.folder / "finetune.ckpt",
        desc=f"{job.method} fine-tune",
        eval_split=ws.eval_split,
        on_epoch_end=ws.on_epoch_end,
        numerics=job.numerics,
    )


def measure(
    ws: Workspace, base: Baseline, model: nn.Module, choice: Choice, acc_after: float, outcome: Outcome
) -> dict:
    """Accuracy in the run's numerics; size and FLOPs of the fp32, contiguous, eager model against
    the baseline's; the training budget spent. Returns the result's measured fields."""
    job, dev, shape = ws.job, ws.device, ws.job.setting.input_shape
    final = evaluate(model, ws.data.eval_batches("test", 500, dev), dev, job.numerics)
    val = evaluate(model, ws.data.eval_batches("val", 500, dev), dev, job.numerics) if ws.eval_split == "val" else None
    base_model = base.model
    for m in (base_model, model):
        m.to(memory_format=torch.contiguous_format)
    params0, flops0 = count_params(base_model), count_flops(base_model, shape)
    params, flops = count_params(model), count_flops(model, shape)
    own, ft = choice.own, job.setting.finetune
    ft_samples = outcome.steps * ft.batch_size
    samples = own.samples + ft_samples
    result = {
        "top1": final["top1"],
        "top5": final["top5"],
        "baseline_top1": base.top1,
        "baseline_key": base.key,
        "baseline_sha256": base.digest,
        "acc_before_removal": choice.acc_before,
        "acc_after_removal": acc_after,
        "params": params,
        "flops": flops,
        "baseline_params": params0,
        "baseline_flops": flops0,
        "speedup": flops0 / flops,
        "granularity": job.impl.granularity,
        "budget": {
            "protocol": job.protocol,
            "own_iters": own.iters,
            "own_samples": own.samples,
            "planned_own_iters": job.planned_prune_iters(),
            "capped": own.capped,
            "finetune_iters": outcome.steps,
            "finetune_epochs": outcome.epochs_done,
            # the fine-tuning's schedule: the recipe's milestones scaled to its length (1.0: the recipe)
            "finetune_stretch": outcome.steps / (ft.epochs * ws.data.batches_per_epoch(ft.batch_size)),
            "finetune_lr": lr_milestones(
                stretched_lr(ft.lr_at, ft.epochs, outcome.steps, ws.data.batches_per_epoch(ft.batch_size)),
                outcome.epochs_done,
            ),
            "finetune_samples": ft_samples,
            "samples": samples,
            "samples_x_train": samples / len(ws.data.train) if ws.data.train is not None else None,
            # training compute: forward + backward ~ 3 x the forward multiply-adds (FLOPs / 2) of
            # the model as it was: whole during the method's own training, pruned while fine-tuning
            "train_macs": 3 * (flops0 // 2 * own.samples + flops // 2 * ft_samples),
            "total_samples_target": job.total_samples,
        },
        "method_info": choice.pruning.info,
        "finetune_seconds": outcome.seconds,
        # what the method asks the pages to show of its own record (``Method.columns``)
        "method_columns": job.impl.column_values(choice.pruning.info),
    }
    if val is not None:
        result["val_top1"] = val["top1"]
    if compile_failure(model):
        result["compile_failure"] = compile_failure(model)
    pruning = choice.pruning
    if pruning.filters is not None:
        result["pruned_filters"] = pruning.filters
    else:
        zeros = sum(int((1 - m).sum()) for m in pruning.masks.values())
        result["sparsity"] = sparsity(model, pruning.masks)
        result["nonzero_params"] = params - zeros
        # the achieved sparsity over every weight the method could mask (what a target of 0.9 means)
        result["weight_sparsity"] = zeros / sum(m.numel() for m in pruning.masks.values())
    return result


def execute(ws: Workspace, base: Baseline, log: list) -> tuple[dict, nn.Module]:
    """Every phase of one job from its baseline: the measured result and the final model, for the
    runner to time (``log`` receives the rows of the method's own training and of the
    fine-tuning). The final weights are stored as ``model.pt`` and the resumable checkpoints
    removed."""
    model = copy.deepcopy(base.model).to(ws.device)
    choice = prune(ws, model)
    log += choice.log
    keeper = apply(ws, model, choice.pruning)
    acc_after = ws.top1(model)
    outcome = finetune(ws, model, keeper, choice.own)
    log += outcome.history
    result = measure(ws, base, model, choice, acc_after, outcome)
    save_atomic(model.state_dict(), ws.folder / "model.pt")
    for ckpt in ("finetune.ckpt", "own.ckpt"):
        (ws.folder / ckpt).unlink(missing_ok=True)
    return result, model
