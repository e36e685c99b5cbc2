"""Model names, resolved through the one registry (``suite.models.nets.MODELS``), with the look of
timm's: ``@register_model``, ``list_models('pat*')``, and names that reach outside the suite.

A model name is one of:
  a registered name            the built-ins of ``suite.models.nets`` (cnn4, resnet56, vgg19, resnet50, ...)
                               and whatever a module adds with ``@register_model``
  ``torchvision:NAME``         any torchvision classification model (``torchvision.models.list_models``)
  ``timm:NAME``                any timm model, when the optional extra is installed (``pip install -e '.[timm]'``)
  ``path/to/file.py:factory``  a user's own code: ``factory(num_classes=K)`` (also ``in_channels=C`` and
                               ``input_size=(H, W)`` when the factory takes them) returns an ``nn.Module``

Outside models are built with random initial weights (``weights=None``, ``pretrained=False``): the
suite never downloads at run time. Their layout is ``GENERIC`` (``suite.models.layouts``): what may be
pruned comes from torch-pruning's dependency graph (``suite.models.groups``), not from the paper's layouts.

Channels: a torchvision model whose stem takes 3 channels gets a fresh stem conv for C channels
when the data has C != 3 (grey images stay 1 channel; torchvision has no ``in_chans`` argument);
timm models take ``in_chans``.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import inspect
import re
from collections.abc import Callable
from pathlib import Path

from torch import nn

from suite.errors import SuiteError
from suite.models.groups import GENERIC
from suite.models.layouts import Layout
from suite.models.nets import MODELS, ModelEntry
from suite.models.transformers import headwise, windowwise
from suite.usercode import load_module


def register_model(fn: Callable | None = None, *, name: str | None = None, description: str = ""):
    """Decorator: ``@register_model`` on ``def mynet(num_classes, in_channels=3, input_size=None)``
    adds it to ``MODELS`` under its function name (layout ``GENERIC``); a duplicate name is an error."""

    def add(f):
        key = name or f.__name__
        if key in MODELS:
            raise SuiteError(f"model {key!r} is registered twice")
        MODELS.register(key)(
            ModelEntry(
                key,
                GENERIC,
                lambda k, shape: _call_factory(f, k, shape, key),
                description or (f.__doc__ or "").strip().split("\n")[0],
            )
        )
        return f

    return add(fn) if fn is not None else add


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell pattern, sorted; ``torchvision:*`` lists torchvision's
    classification models and ``timm:*`` timm's (when installed)."""
    if pattern.startswith("torchvision:"):
        from torchvision import models as tvm

        names = [f"torchvision:{n}" for n in tvm.list_models(module=tvm)]
    elif pattern.startswith("timm:"):
        names = [f"timm:{n}" for n in _timm().list_models()]
    else:
        return MODELS.names(pattern)
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def get(name: str) -> ModelEntry:
    """The entry for a model name (see the module docstring); a bad name is a one-line error."""
    if not isinstance(name, str):
        raise SuiteError(f"model {name!r}: must be a string")
    if name in MODELS:
        return MODELS.get(name)
    if name.startswith("torchvision:"):
        return _torchvision_entry(name.split(":", 1)[1])
    if name.startswith("timm:"):
        return _timm_entry(name.split(":", 1)[1])
    m = re.fullmatch(r"(.+\.py):([A-Za-z_]\w*)", name)
    if m:
        return _file_entry(Path(m.group(1)), m.group(2))
    try:
        return MODELS.get(name)  # not registered: its one-line "did you mean" error, with the other forms
    except SuiteError as e:
        raise SuiteError(
            f"{e}; or torchvision:NAME (e.g. torchvision:resnet18), timm:NAME, path/to/file.py:factory"
        ) from None


def code_modules(name: str) -> tuple[str, ...]:
    """The dotted names of the modules that make the named model a training run's model: the one
    that builds it and the one that defines its layout (``suite.store.fingerprint.training_code``
    adds them, and what they import, to the shared harness). A built-in net: ``suite.models.nets``
    and ``suite.models.layouts``, both already shared; a torchvision, timm or file model: this
    module and the generic layout's."""
    entry = get(name)
    return tuple(sorted({entry.build.__module__, type(entry.layout).__module__}))


def build(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return get(name).build(num_classes, tuple(input_shape))


def layout(name: str) -> Layout:
    """What may be pruned in the named model and how its ratio strings resolve."""
    return get(name).layout


# --------------------------------------------------------------------------- torchvision
@functools.cache
def _torchvision_names() -> tuple[str, ...]:
    # importing torchvision pulls in torch._dynamo (seconds): only when a torchvision name is used
    from torchvision import models as tvm

    return tuple(tvm.list_models(module=tvm))  # classification models only (not detection, video, ...)


def _torchvision_entry(short: str) -> ModelEntry:
    if short not in _torchvision_names():
        import difflib

        close = difflib.get_close_matches(short, _torchvision_names(), n=3)
        raise SuiteError(
            f"torchvision:{short} is not a torchvision classification model"
            f"{' (did you mean ' + ', '.join(close) + '?)' if close else ''}; "
            f"'suite list models torchvision:*' lists them"
        )

    def make(k: int, shape: tuple[int, int, int]) -> nn.Module:
        from torchvision import models as tvm

        try:
            if short.startswith("vit_"):
                # a ViT is built for the data's (square) image size, and with attention whose heads
                # can be removed (suite.models.transformers.headwise: the same function)
                patch = int(re.search(r"_(\d+)$", short).group(1))
                if shape[1] != shape[2] or shape[1] % patch:
                    raise SuiteError(
                        f"torchvision:{short} cuts {patch}x{patch} patches: it takes square images whose side is a "
                        f"multiple of {patch}, not {shape[1]}x{shape[2]}"
                    )
                model = headwise(tvm.get_model(short, weights=None, num_classes=k, image_size=shape[1]))
                return _adapt_stem(model, shape[0], f"torchvision:{short}")
            # MaxViT partitions its feature maps by the input size it is built for: build it for the data's
            size = {"input_size": tuple(shape[1:])} if short.startswith("maxvit_") else {}
            model = tvm.get_model(short, weights=None, num_classes=k, **size)
            if short.startswith(("swin_", "maxvit_")):  # attention whose heads can be removed (the same function)
                model = windowwise(model)
            if getattr(model, "aux_logits", False):
                # GoogLeNet and Inception v3 return (logits, aux logits...) while training, which no
                # recipe of the suite's trains on (one loss on the main logits, as every method's
                # fine-tuning): built without the auxiliary heads, they return the logits only
                model = tvm.get_model(short, weights=None, num_classes=k, aux_logits=False)
        except (ValueError, TypeError) as e:  # e.g. inception's aux_logits with weights=None
            raise SuiteError(
                f"torchvision:{short} cannot be built for {k} classes at {shape[1]}x{shape[2]}: {' '.join(str(e).split())}"
            ) from None
        return _adapt_stem(model, shape[0], f"torchvision:{short}")

    return ModelEntry(f"torchvision:{short}", GENERIC, make, f"torchvision {short}, random init")


def _adapt_stem(model: nn.Module, channels: int, who: str) -> nn.Module:
    """Replace the first conv (which takes 3 channels) by a fresh one for ``channels`` inputs."""
    if channels == 3:
        return model
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != 3 or child.groups != 1:
                    raise SuiteError(
                        f"{who}: its first conv takes {child.in_channels} channels, not 3; "
                        f"cannot adapt it to {channels}-channel data"
                    )
                setattr(
                    parent,
                    child_name,
                    nn.Conv2d(
                        channels,
                        child.out_channels,
                        child.kernel_size,
                        child.stride,
                        child.padding,
                        child.dilation,
                        1,
                        child.bias is not None,
                        child.padding_mode,
                    ),
                )
                return model
    raise SuiteError(f"{who} has no Conv2d to take {channels}-channel input")


# --------------------------------------------------------------------------- timm
def _timm():
    if importlib.util.find_spec("timm") is None:
        raise SuiteError("timm models need the optional extra: pip install -e '.[timm]' (or pip install timm)")
    import timm

    return timm


def _timm_entry(short: str) -> ModelEntry:
    timm = _timm()
    if not timm.is_model(short):
        raise SuiteError(f"timm:{short} is not a timm model; 'suite list models timm:*' lists them")

    def make(k: int, shape: tuple[int, int, int]) -> nn.Module:
        # A ViT-style model (vit_*, deit_*, swin_*) fixes its patch grid at build, so it is built for the
        # data's image size; timm says which models take ``img_size`` only by refusing it (a
        # TypeError from the model class), so the others are built without it.
        try:
            return timm.create_model(
                short, pretrained=False, num_classes=k, in_chans=shape[0], img_size=tuple(shape[1:])
            )
        except TypeError as e:
            if "img_size" not in str(e):
                raise
        return timm.create_model(short, pretrained=False, num_classes=k, in_chans=shape[0])

    return ModelEntry(f"timm:{short}", GENERIC, make, f"timm {short}, random init")


# --------------------------------------------------------------------------- user files
def _file_entry(path: Path, factory: str) -> ModelEntry:
    if not path.is_file():
        raise SuiteError(f"model file {path} does not exist (write the model as path/to/file.py:factory)")
    fn = getattr(load_module(path), factory, None)
    if not callable(fn):
        raise SuiteError(f"model file {path} has no function {factory!r} (write path/to/file.py:factory)")
    name = f"{path}:{factory}"
    return ModelEntry(
        name,
        GENERIC,
        lambda k, shape: _call_factory(fn, k, shape, name),
        (fn.__doc__ or f"{factory} from {path.name}").strip().split("\n")[0],
    )


def source_digest(name: str) -> str | None:
    """SHA-256 (16 hex digits) of a user model file's source, so an edited model is another run;
    None for every other name (their code is the suite's or a pinned library's)."""
    m = re.fullmatch(r"(.+\.py):([A-Za-z_]\w*)", name)
    if not m or not Path(m.group(1)).is_file():
        return None
    import hashlib

    return hashlib.sha256(Path(m.group(1)).read_bytes()).hexdigest()[:16]


def _call_factory(fn: Callable, k: int, shape: tuple[int, int, int], who: str) -> nn.Module:
    """``fn(num_classes=k)``, plus ``in_channels`` and ``input_size`` when its signature takes them."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = {"num_classes": k}
    for key, value in (("in_channels", shape[0]), ("input_size", tuple(shape[1:]))):
        if key in params or takes_any:
            kwargs[key] = value
    try:
        model = fn(**kwargs)
    except Exception as e:
        raise SuiteError(
            f"{who}({', '.join(f'{a}={v!r}' for a, v in kwargs.items())}) failed: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(model, nn.Module):
        raise SuiteError(f"{who} returned {type(model).__name__}, not a torch.nn.Module")
    return model
