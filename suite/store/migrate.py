"""Renaming stored runs to today's identity, so runs stored under an older naming stay findable.

Run folders were once named by a hash over the whole setting (its description and every other
method's overrides included). ``suite.spec.plan.Job.identity`` now names a run by what defines its
result only. This rewrites each folder's name from the job its own ``config.json`` records, notes
the old name there (``migrated_from``), and points ``same_training_as`` references at the new
names. Nothing is deleted: two old folders that turn out to be the same job keep the first as the
run and move the other into its ``superseded/`` folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from suite.errors import SuiteError
from suite.spec.plan import Job
from suite.spec.settings import Setting
from suite.store.files import read_json, write_json
from suite.training.numerics import Numerics


def job_of(config: dict) -> Job:
    """The job a stored config describes (old or new layout)."""
    setting = Setting.from_dict(config.get("setting_definition") or config["setting"])
    baseline = config.get("baseline")  # the identity's: a --baseline file's digest, or the setting's recipe
    user_baseline = baseline.get("weights") if isinstance(baseline, dict) else None
    return Job(
        setting,
        config["method"],
        config["hparams"],
        config["seed"],
        config.get("baseline_seed", 0),
        config.get("protocol", "paper"),
        config.get("smoke", False),
        config.get("hparams_source", "default"),
        user_baseline,
        config.get("total_samples"),
        Numerics.from_record(config),
    )


def migrate(runs_dir: Path) -> dict[str, str]:
    """Rename every run folder under ``runs_dir`` whose name is not its job's hash; return
    {old path: new path} of what moved. Safe to run again: it then moves nothing."""
    moved: dict[str, str] = {}
    names: dict[str, str] = {}  # old folder name -> new, per method folder, for same_training_as
    for cfg in sorted(Path(runs_dir).glob("*/*/*/config.json")):
        folder = cfg.parent
        if folder.parent.parent.name == "baselines":
            continue
        config = read_json(cfg)
        try:
            job = job_of(config)
            new = job.folder(folder.parent.parent.parent, config["data"])
        except (KeyError, TypeError, SuiteError) as e:
            raise SuiteError(f"cannot migrate {folder}: its config.json does not describe a job ({e})") from None
        if new == folder:
            continue
        names[folder.name] = new.name
        if new.exists():  # the same job stored twice under the old naming: keep one, set the other aside
            new = new / "superseded" / f"duplicate-{folder.name}"
            new.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(new)
        config.setdefault("migrated_from", folder.name)
        write_json(new / "config.json", config)
        moved[str(folder)] = str(new)
    for res in Path(runs_dir).glob("*/*/*/result.json"):
        result = json.loads(res.read_text())
        if result.get("same_training_as") in names:
            result["same_training_as"] = names[result["same_training_as"]]
            write_json(res, result)
    return moved
