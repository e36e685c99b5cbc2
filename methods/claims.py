"""The paper's claims about its methods, as ``suite.pages.findings`` sets them against the stored runs.

They live with the methods because they name them; the suite only measures what each claim says.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    short: str  # the claim in a few words, as the generated summary opens its sentence
    a: str  # the method the paper says is better (or whose removal is harmless)
    b: str
    measure: str  # "top1": accuracy after fine-tuning; "removal": points lost at removal (lower is better)
    column: str | None = None  # a column of method a (``Method.columns``) shown beside the verdict


CLAIMS = (
    Claim(
        "greg1-vs-l1",
        "GReg-1 beats one-shot L1 pruning of the same filters (same fine-tuning)",
        "GReg-1 beats L1",
        "greg1",
        "l1",
        "top1",
    ),
    Claim("greg2-vs-greg1", "GReg-2 beats GReg-1", "GReg-2 beats GReg-1", "greg2", "greg1", "top1"),
    Claim(
        "removal",
        "Removal hurts less after the growing penalty: GReg-1 loses fewer points at removal than "
        "L1's one-shot cut (the paper: removal becomes harmless as the kept/pruned magnitude ratio grows; "
        "harmless would be near 0 points lost)",
        "Removal hurts GReg-1 less than L1",
        "greg1",
        "l1",
        "removal",
        "mag_ratio",
    ),
)
# Read over the targets of one series: a - b at each, from the mildest to the strongest pruning.
GAP = Claim(
    "gap",
    "The gap between GReg-1 and L1 grows with the pruning ratio",
    "GReg-1's lead grows with the ratio",
    "greg1",
    "l1",
    "top1",
)
