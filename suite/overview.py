"""What a setting means before any training: sizes before and after removing filters at its
ratios (``suite list settings``)."""
from __future__ import annotations

from suite.measure import count_flops, count_params
from suite.models import example_input
from suite.ratios import n_pruned
from suite.settings import Setting
from suite.surgery import remove_filters


def achieved(setting: Setting, ratios: str | None = None, skip: str | None = None) -> dict:
    """Params and FLOPs (paper's convention) of the setting's model before and after removal.

    Sizes depend only on how many filters each conv loses, not on which: the first
    ``n_pruned(r, n)`` are removed here, so the harness needs no selection rule."""
    model = setting.build_model()
    layer_ratios = setting.layer_ratios(model, ratios, skip)
    shape = setting.input_shape
    params, flops = count_params(model), count_flops(model, shape)
    choice = {n: list(range(n_pruned(r, model.get_submodule(n).out_channels))) for n, r in layer_ratios.items()}
    remove_filters(model, choice, example_input(shape[0], shape[1]))
    p, f = count_params(model), count_flops(model, shape)
    return {"params": params, "flops": flops, "pruned_params": p, "pruned_flops": f,
            "speedup": flops / f, "param_reduction": params / p, "pruned_layers": len(layer_ratios)}


def setting_row(setting: Setting) -> dict:
    row = {"name": setting.name, "dataset": setting.dataset, "model": setting.model, "ratios": setting.ratios,
           "skip": setting.skip, "targets": list(setting.targets), "reduced": setting.reduced,
           "budget": setting.budget_label(), "method_overrides": setting.method_overrides,
           "description": setting.description}
    row.update(achieved(setting))
    return row
