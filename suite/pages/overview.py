"""What a setting means before any training: sizes before and after removing filters at its
ratios (``suite list settings``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from suite.spec.settings import Setting
from suite.store.files import write_json
from suite.store.fingerprint import code_digest

CACHE = Path.home() / ".cache" / "greg-suite" / "settings-overview.json"


def achieved(setting: Setting, ratios: str | None = None, skip: str | None = None) -> dict:
    """Params and FLOPs (paper's convention) of the setting's model before and after removal.

    Sizes depend only on how many filters each conv loses, not on which: the first
    ``n_pruned(r, n)`` are removed here, so the harness needs no selection rule."""
    from suite.models.ratios import dry_surgery

    model = setting.build_model()
    return dry_surgery(model, setting.layer_ratios(model, ratios, skip), setting.input_shape, setting.layout)


def changed_defaults(setting: Setting) -> dict:
    """The setting's method overrides that differ from the methods' own defaults, per pattern:
    the paper's CIFAR settings restate GReg's defaults, which is no change worth announcing."""
    from methods import registry

    out = {}
    for pattern, values in setting.method_overrides.items():
        defaults = [registry.get(n).Hparams().to_dict() for n in registry.names(pattern)]
        changed = {k: v for k, v in values.items() if any(d.get(k) != v for d in defaults)}
        if changed:
            out[pattern] = changed
    return out


def setting_row(setting: Setting) -> dict:
    row = {
        "name": setting.name,
        "dataset": setting.dataset,
        "model": setting.model,
        "ratios": setting.ratios,
        "input_shape": list(setting.input_shape),
        "num_classes": setting.num_classes,
        "skip": setting.skip,
        "targets": list(setting.targets),
        "reduced": setting.reduced,
        "budget": setting.budget_label(),
        "method_overrides": changed_defaults(setting),
        "description": setting.description,
    }
    row.update(cached_achieved(setting))
    return row


def _code_version() -> str:
    """A hash of the sources that count params and FLOPs (not the git commit: edits count too): this
    module and all it imports (``achieved``'s dry surgery, the settings, the model registry), found by
    following the imports so that a new helper of theirs counts without being listed."""
    return code_digest([Path(__file__).resolve()])


def cached_achieved(setting: Setting) -> dict:
    """``achieved`` once per setting and code version: building ResNet-50 and running its surgery
    takes seconds, and ``suite list settings`` should answer at once. ``suite run`` checks its target
    with it before training, and the latency page tells two cuts apart by it. The cache holds one code
    version (a new one starts it afresh); one that cannot be read or written is simply not used."""
    code = _code_version()
    try:
        cache = json.loads(CACHE.read_text())
        rows = cache["rows"] if cache.get("code") == code else {}
    except (OSError, ValueError, KeyError, AttributeError):
        rows = {}
    from suite.models.zoo import source_digest

    # a user's model file and data shape count too: the same setting file may name edited code
    what = {
        **setting.to_dict(),
        "model_code": source_digest(setting.at_root(setting.model)),
        "input": [list(setting.input_shape), setting.num_classes],
    }
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
    if key not in rows:
        rows[key] = achieved(setting)
        try:
            write_json(CACHE, {"code": code, "rows": rows})
        except OSError:
            pass
    return rows[key]
