"""``suite list``: the settings (with the params and FLOPs their ratios achieve), the methods
(with their hyperparameters) or the models a user can name."""

from __future__ import annotations

import json

from suite.errors import SuiteError

NAME = "list"


def add(sub) -> None:
    """``suite list`` and its options."""
    ls = sub.add_parser(
        "list",
        help="list settings, methods or models",
        description="List settings (with the params/FLOPs their ratios achieve), methods, or "
        "models ('torchvision:*', 'timm:*' for theirs).",
    )
    ls.add_argument("what", choices=["settings", "methods", "models"])
    ls.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="name pattern with wildcards, e.g. 'nni-*'; for settings also a FILE.toml",
    )
    ls.add_argument("--data-dir", default=None, help="with a FILE.toml: where its dataset lives")
    ls.add_argument("--json", action="store_true", help="machine-readable output")


def _matching(what: str, names, pattern: str, keep=None) -> list[str]:
    """``names`` (those ``keep(name, pattern)`` accepts, when given); none is an error, not an empty
    list that reads as "there are none"."""
    found = [n for n in names if keep is None or keep(n, pattern)]
    if not found:
        hint = " (torchvision:* and timm:* list theirs)" if what == "models" else ""
        raise SuiteError(f"no {what[:-1]} matches {pattern!r}: 'suite list {what}' lists them all{hint}")
    return found


def main(args) -> int:
    import fnmatch

    if args.what == "models":
        from suite.models import zoo

        for name in _matching("models", zoo.list_models(args.pattern), args.pattern):
            print(name)
        return 0
    if args.what == "methods":
        from methods import registry

        rows = []
        for name in _matching("methods", registry.names(args.pattern), args.pattern):
            m = registry.get(name)
            rows.append(
                {
                    "name": name,
                    "granularity": m.granularity,
                    "summary": m.summary,
                    "hparams": m.Hparams().to_dict(),
                    "search_space": {k: list(v) for k, v in m.Hparams.space().items()},
                }
            )
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(f"{r['name']:<20} {r['granularity']:<7} {r['summary']}")
                hp = ", ".join(f"{k}={v}" for k, v in r["hparams"].items())
                print(f"{'':<20} {hp or '(no hyperparameters)'}")
        return 0

    from suite.pages.overview import setting_row
    from suite.spec.settings import DEFAULT_SETTING, SETTINGS, get_setting

    if args.pattern.endswith(".toml"):  # a custom setting: what it means before any training
        rows = [setting_row(get_setting(args.pattern, data_dir=args.data_dir))]
    else:
        names = sorted(SETTINGS, key=lambda n: n != DEFAULT_SETTING)  # the default first, then as registered
        rows = [setting_row(SETTINGS[n]) for n in _matching("settings", names, args.pattern, fnmatch.fnmatchcase)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        default = "  [default]" if r["name"] == DEFAULT_SETTING else ""
        shape = "x".join(map(str, r["input_shape"]))
        print(
            f"{r['name']}{default}  ({r['dataset']}, {r['model']}; {shape}, {r['num_classes']} classes; {r['budget']})"
        )
        skip = f" skip {r['skip']}" if r["skip"] else ""
        print(
            f"  ratios {r['ratios']}{skip}: params {r['params'] / 1e6:.3f}M -> {r['pruned_params'] / 1e6:.3f}M, "
            f"FLOPs {r['flops'] / 1e6:.2f}M -> {r['pruned_flops'] / 1e6:.2f}M, speedup {r['speedup']:.2f}x "
            f"(L1-smallest filters removed, {r['pruned_layers']} layers)"
        )
        if r["targets"]:
            print(f"  other targets: {', '.join(r['targets'])}")
        if r["method_overrides"]:
            print(f"  method defaults changed for this budget: {json.dumps(r['method_overrides'])}")
    return 0
