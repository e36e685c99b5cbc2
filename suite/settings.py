"""Settings: dataset + model + baseline recipe + per-layer ratios + fine-tune recipe + budget.

Every method in a comparison starts from the same baseline of a setting and gets the same
fine-tuning. The paper's settings carry the paper's recipes (GREG_SPEC.md); the CPU settings
cut them down so a 2-core machine finishes, and say so (``reduced``).
"""
from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from suite.data import DATASET_INFO
from suite.errors import SuiteError
from suite.models import MODELS, build_model, model_family
from suite.ratios import parse_ratios, resolve
from suite.train import Recipe


@dataclass(frozen=True)
class PruneRecipe:
    """The optimizer of a method's regularization phase (``lr_prune``, ``batch_size_prune``) and
    the cap on its iterations, so a penalty that never converges cannot run forever."""

    lr: float = 0.001
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_iters: int = 200_000


@dataclass(frozen=True)
class Setting:
    name: str
    dataset: str
    model: str
    ratios: str  # the default target, a ratio string (suite.ratios)
    baseline: Recipe
    finetune: Recipe
    prune: PruneRecipe = PruneRecipe()
    skip: str = ""
    targets: tuple[str, ...] = ()  # more ratio strings the paper reports for this setting
    reduced: bool = False  # True: a CPU-sized budget, not the paper's
    description: str = ""
    # Method defaults this budget changes, by method-name pattern: {"greg*": {"update_interval": 1}}.
    method_overrides: dict = field(default_factory=dict)
    val_size: int = 5000  # images carved from train for `suite search`
    train_limit: int | None = None  # train on the first N images only (quick checks; reduced budget)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return DATASET_INFO[self.dataset][0]

    @property
    def num_classes(self) -> int:
        return DATASET_INFO[self.dataset][1]

    @property
    def family(self) -> str:
        return model_family(self.model)

    def build_model(self):
        return build_model(self.model, self.num_classes, self.input_shape[0])

    def layer_ratios(self, model, ratios: str | None = None, skip: str | None = None,
                     granularity: str = "filter") -> dict[str, float]:
        spec = parse_ratios(ratios or self.ratios, self.skip if skip is None else skip)
        return resolve(spec, model, self.family, granularity)

    def overrides_for(self, method: str) -> dict:
        out = {}
        for pattern, values in self.method_overrides.items():
            if fnmatch.fnmatchcase(method, pattern):
                out.update(values)
        return out

    def budget_label(self) -> str:
        kind = "reduced CPU budget" if self.reduced else "paper recipe"
        return f"{kind}: baseline {self.baseline.epochs} ep, fine-tune {self.finetune.epochs} ep"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["baseline"], d["finetune"] = self.baseline.to_dict(), self.finetune.to_dict()
        d["targets"] = list(self.targets)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Setting":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise SuiteError(f"setting has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        try:
            d = dict(d)
            d["baseline"], d["finetune"] = Recipe.from_dict(d["baseline"]), Recipe.from_dict(d["finetune"])
            d["prune"] = PruneRecipe(**d.get("prune", {}))
            d["targets"] = tuple(d.get("targets", ()))
            s = cls(**d)
        except (KeyError, TypeError) as e:
            raise SuiteError(f"setting {d.get('name', '?')!r} is incomplete or mistyped: {e}") from None
        s.validate()
        return s

    def validate(self) -> None:
        if self.dataset not in DATASET_INFO:
            raise SuiteError(f"setting {self.name}: unknown dataset {self.dataset!r}; known: {', '.join(DATASET_INFO)}")
        if self.model not in MODELS:
            raise SuiteError(f"setting {self.name}: unknown model {self.model!r}; known: {', '.join(MODELS)}")
        model = self.build_model()
        for r in (self.ratios, *self.targets):
            self.layer_ratios(model, r)


CIFAR_FT = {0: 0.01, 60: 0.001, 90: 0.0001}
CIFAR_BASE = {0: 0.1, 100: 0.01, 150: 0.001}
GREG_CIFAR = {"greg*": {"update_interval": 10, "stabilize_iters": 10_000}}
GREG_IMAGENET = {"greg*": {"update_interval": 5, "stabilize_iters": 40_000}}

SETTINGS: dict[str, Setting] = {}


def _add(s: Setting) -> None:
    SETTINGS[s.name] = s


_add(Setting(
    "cifar10-resnet56", "cifar10", "resnet56", "[0,0.75,0.75,0.32,0]",
    baseline=Recipe(200, 128, CIFAR_BASE), finetune=Recipe(120, 128, CIFAR_FT),
    prune=PruneRecipe(batch_size=128), method_overrides=GREG_CIFAR,
    targets=("[0,0.5,0.5,0.5,0]", "[0,0.7,0.7,0.7,0]", "[0,0.9,0.9,0.9,0]"),
    description="GReg paper Table 2: ResNet-56 on CIFAR-10 at 2.55x"))
_add(Setting(
    "cifar100-vgg19", "cifar100", "vgg19", "[1-15:0.7]",
    baseline=Recipe(200, 256, CIFAR_BASE), finetune=Recipe(120, 256, CIFAR_FT),
    prune=PruneRecipe(batch_size=256), method_overrides=GREG_CIFAR,
    targets=("[1-15:0.5]", "[1-15:0.8]", "[1-15:0.9]"),
    description="GReg paper Table 2: VGG-19 on CIFAR-100 at 8.84x"))
_IMAGENET_FT = Recipe(90, 256, {0: 0.01, 30: 0.001, 60: 0.0001, 75: 0.00001}, weight_decay=1e-4)
_IMAGENET_BASE = Recipe(90, 256, {0: 0.1, 30: 0.01, 60: 0.001}, weight_decay=1e-4)
_add(Setting(
    "imagenet-resnet34", "imagenet", "resnet34", "[0,0.5,0.6,0.4,0,0]", skip="[1.0,2.0,2.3,3.0,3.5]",
    baseline=_IMAGENET_BASE, finetune=_IMAGENET_FT, prune=PruneRecipe(weight_decay=1e-4),
    method_overrides=GREG_IMAGENET, description="GReg paper: ResNet-34 on ImageNet at 1.32x"))
_add(Setting(
    "imagenet-resnet50", "imagenet", "resnet50", "[0,0.6,0.6,0.6,0.21,0]",
    baseline=_IMAGENET_BASE, finetune=_IMAGENET_FT, prune=PruneRecipe(weight_decay=1e-4),
    method_overrides=GREG_IMAGENET,
    targets=("[0,0.3,0.3,0.3,0.14,0]", "[0,0.74,0.74,0.6,0.21,0]", "[0,0.68,0.68,0.68,0.5,0]"),
    description="GReg paper: ResNet-50 on ImageNet at 2.31x (and 1.49x, 2.56x, 3.06x)"))

# CPU settings. GReg's penalty must grow to its ceiling (tau/delta updates) before removal is
# nearly harmless; at K_u = 1 that is 10k iterations, minutes on these nets, not hours.
_add(Setting(
    "fmnist-cnn4", "fashion-mnist", "cnn4", "0.7",
    baseline=Recipe(8, 128, {0: 0.05, 5: 0.005}), finetune=Recipe(3, 128, {0: 0.01, 2: 0.001}),
    prune=PruneRecipe(batch_size=64, max_iters=20_000),
    method_overrides={"greg*": {"update_interval": 1, "stabilize_iters": 500}},
    targets=("0.5", "0.9"), reduced=True, val_size=5000,
    description="CPU default: 4-conv net (3.7 M MACs) on Fashion-MNIST, convs 1-3 pruned"))
_add(Setting(
    "cifar10jpg-resnet20", "cifar10-jpg", "resnet20", "[0,0.5,0.5,0.5,0]",
    baseline=Recipe(30, 128, {0: 0.1, 15: 0.01, 25: 0.001}), finetune=Recipe(10, 128, {0: 0.01, 6: 0.001}),
    prune=PruneRecipe(batch_size=64, max_iters=20_000),
    method_overrides={"greg*": {"update_interval": 1, "stabilize_iters": 1000}},
    targets=("[0,0.9,0.9,0.9,0]",), reduced=True,
    description="CPU: ResNet-20 on the CIFAR-10 JPEG copy"))

DEFAULT_SETTING = "fmnist-cnn4"


def get_setting(name_or_file: str) -> Setting:
    """A named setting, or a TOML file describing one (same fields as :class:`Setting`)."""
    if name_or_file in SETTINGS:
        return SETTINGS[name_or_file]
    path = Path(name_or_file)
    if path.suffix == ".toml":
        if not path.is_file():
            raise SuiteError(f"setting file {path} does not exist")
        try:
            return Setting.from_dict(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise SuiteError(f"setting file {path} is not valid TOML: {e}") from None
    import difflib
    close = difflib.get_close_matches(name_or_file, SETTINGS, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise SuiteError(f"unknown setting {name_or_file!r}{hint}; known: {', '.join(SETTINGS)}; "
                     f"or pass a .toml file")


def with_ratios(setting: Setting, ratios: str | None, skip: str | None = None) -> Setting:
    """The setting with another target; checked against the model right away."""
    if ratios is None and skip is None:
        return setting
    s = replace(setting, ratios=ratios or setting.ratios, skip=setting.skip if skip is None else skip)
    s.layer_ratios(s.build_model())
    return s
