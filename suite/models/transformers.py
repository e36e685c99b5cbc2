"""A transformer's prunable units: attention heads and MLP channels.

A *head unit* is one attention module's heads: head h is its query, key and value rows of the
fused ``qkv`` linear layer (rows h*d .. h*d+d-1 of each of the three blocks of H*d rows) and the
same d input columns of the output projection ``proj``; removing heads keeps the rest in order and
lowers the module's ``num_heads``. A *MLP unit* is one MLP's hidden channels: rows of its first
linear layer (and bias) with the columns of its second. The embedding width (the residual stream:
every LayerNorm, the patch embedding and the classifier) is torch-pruning's traced group of the stem,
a unit only when a ratio string names it (``embed=``: ``suite.models.groups``); after its removal
:func:`fit_embedding_width` updates what torch-pruning cannot see. Each unit is named by the layer
that makes its channels (``qkv``, ``fc1``), so a method sees a ``Group`` (``suite.models.layouts``)
whose rows are the weights it ranks and penalizes.

Found by what a module is, not by its model's name:
  heads   ``HeadAttention`` (below) and modules shaped like timm's ``Attention``: linear ``qkv`` and
          ``proj``, integer ``num_heads`` and ``head_dim`` that its forward reads, no norm or gate
          over the heads' outputs; an attention with per-head parameters of its own (Swin's
          relative position bias) slices them in its ``keep_heads``.
  MLP     torchvision's ``MLP`` (ViT's ``MLPBlock``, Swin's MLP) with two linear layers, ConvNeXt's
          block (its two linear layers after the depthwise conv), MaxViT's attention layers' MLP,
          and any module with linear ``fc1`` and ``fc2`` (timm's ``Mlp``) and no norm between them.

torchvision's ViT attends with ``nn.MultiheadAttention``, whose inner width is the embedding width
(it checks ``embed_dim == num_heads * head_dim``), so a head cannot leave it: the zoo builds
torchvision's ViTs with :class:`HeadAttention` in its place (the same function, weights copied:
:func:`headwise`). torchvision's Swin computes its head width as the embedding width over the head
count, so a head cannot leave it either: the zoo builds Swin V1 and V2 with their window attention
given a ``head_dim`` and torchvision's forward with that one change (:func:`windowwise`). MaxViT's
attention reshapes its heads' outputs to the embedding width and names its layers ``to_qkv`` and
``merge``: :func:`windowwise` gives it ``qkv``, ``proj`` and ``num_heads`` and torchvision's forward
with the heads' outputs ``num_heads * head_dim`` wide.

Written by hand, not with torch-pruning: its head pruning (``num_heads`` with ``prune_num_heads``)
lives in its MetaPruner, which ranks heads by its own importance and cannot take the heads a method
chose; the slicing is a few index selections. May import: suite.errors, suite.models.layouts.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import SuiteError
from suite.models.layouts import Group

KINDS = ("heads", "mlp")  # the structure kinds a ratio string may name (heads=0.5,mlp=0.3)
_ELEMENTWISE = (nn.GELU, nn.ReLU, nn.SiLU, nn.Dropout, nn.Identity)


class HeadAttention(nn.Module):
    """Self-attention with its query, key and value as one linear layer and its head count a plain
    attribute, called as ``nn.MultiheadAttention`` is in torchvision's ViT encoder block
    (``attn(x, x, x, need_weights=False)`` returns ``(output, None)``)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, head_dim, dropout
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim)
        self.proj = nn.Linear(num_heads * head_dim, dim)

    @classmethod
    def from_multihead(cls, mha: nn.MultiheadAttention) -> HeadAttention:
        """The same function as ``mha`` (self-attention, batch first, no bias_k/v, no kdim/vdim)."""
        if not (mha.batch_first and mha._qkv_same_embed_dim and mha.bias_k is None and mha.in_proj_bias is not None):
            raise SuiteError("this nn.MultiheadAttention is not the plain batch-first self-attention of a ViT block")
        new = cls(mha.embed_dim, mha.num_heads, mha.head_dim, mha.dropout)
        new = new.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)
        with torch.no_grad():
            new.qkv.weight.copy_(mha.in_proj_weight)
            new.qkv.bias.copy_(mha.in_proj_bias)
            new.proj.weight.copy_(mha.out_proj.weight)
            new.proj.bias.copy_(mha.out_proj.bias)
        return new

    def forward(self, query, key=None, value=None, need_weights: bool = False):
        b, n, _ = query.shape
        q, k, v = self.qkv(query).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)), None


def headwise(model: nn.Module) -> nn.Module:
    """``model`` with every ViT encoder block's ``nn.MultiheadAttention`` replaced by a
    :class:`HeadAttention` computing the same function (in place; returns the model)."""
    from torchvision.models.vision_transformer import EncoderBlock

    for block in model.modules():
        if isinstance(block, EncoderBlock) and isinstance(block.self_attention, nn.MultiheadAttention):
            block.self_attention = HeadAttention.from_multihead(block.self_attention)
    return model


def _window_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``shifted_window_attention`` (torchvision/models/swin_transformer.py, BSD-3) with
    the head width an attribute (``attn.head_dim``) instead of the embedding width over the head
    count, and the heads' outputs ``num_heads * head_dim`` wide before the projection: the only
    changes, so a Swin block computes what it did until a head is removed. x: [B, H, W, C]."""
    b, h, w, c = x.shape
    ws, shift = attn.window_size, list(attn.shift_size)
    pad_r, pad_b = (ws[1] - w % ws[1]) % ws[1], (ws[0] - h % ws[0]) % ws[0]
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, ph, pw, _ = x.shape
    if ws[0] >= ph:
        shift[0] = 0
    if ws[1] >= pw:
        shift[1] = 0
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    nw = (ph // ws[0]) * (pw // ws[1])
    x = x.view(b, ph // ws[0], ws[0], pw // ws[1], ws[1], c).permute(0, 1, 3, 2, 4, 5).reshape(b * nw, ws[0] * ws[1], c)
    heads, d = attn.num_heads, attn.head_dim
    logit_scale = getattr(attn, "logit_scale", None)
    qkv_bias = attn.qkv.bias
    if logit_scale is not None and qkv_bias is not None:  # Swin V2: no key bias
        qkv_bias = qkv_bias.clone()
        qkv_bias[heads * d : 2 * heads * d].zero_()
    qkv = F.linear(x, attn.qkv.weight, qkv_bias).reshape(x.size(0), x.size(1), 3, heads, d).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if logit_scale is not None:
        scores = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        scores = scores * torch.clamp(logit_scale, max=math.log(100.0)).exp()
    else:
        scores = (q * d**-0.5).matmul(k.transpose(-2, -1))
    scores = scores + attn.get_relative_position_bias()
    if sum(shift) > 0:
        mask = x.new_zeros((ph, pw))
        count = 0
        for hs in ((0, -ws[0]), (-ws[0], -shift[0]), (-shift[0], None)):
            for wsl in ((0, -ws[1]), (-ws[1], -shift[1]), (-shift[1], None)):
                mask[hs[0] : hs[1], wsl[0] : wsl[1]] = count
                count += 1
        mask = mask.view(ph // ws[0], ws[0], pw // ws[1], ws[1]).permute(0, 2, 1, 3).reshape(nw, ws[0] * ws[1])
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        scores = scores.view(x.size(0) // nw, nw, heads, x.size(1), x.size(1)) + mask.unsqueeze(1).unsqueeze(0)
        scores = scores.view(-1, heads, x.size(1), x.size(1))
    scores = F.dropout(F.softmax(scores, dim=-1), p=attn.attention_dropout, training=attn.training)
    x = scores.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), heads * d)
    x = F.dropout(attn.proj(x), p=attn.dropout, training=attn.training)
    x = x.view(b, ph // ws[0], pw // ws[1], ws[0], ws[1], c).permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


def _relative_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``RelativePositionalMultiHeadAttention.forward`` (torchvision/models/maxvit.py,
    BSD-3) with its layers named ``qkv`` and ``proj`` and the heads' outputs ``num_heads * head_dim``
    wide before the projection (torchvision reshapes them to the input's width): the only changes,
    so a MaxViT block computes what it did until a head is removed. x: [B, G, P, D]."""
    b, g, p, _ = x.shape
    heads, d = attn.num_heads, attn.head_dim
    q, k, v = (t.reshape(b, g, p, heads, d).permute(0, 1, 3, 2, 4) for t in torch.chunk(attn.qkv(x), 3, dim=-1))
    k = k * attn.scale_factor
    scores = torch.einsum("B G H I D, B G H J D -> B G H I J", q, k)
    scores = F.softmax(scores + attn.get_relative_positional_bias(), dim=-1)
    out = torch.einsum("B G H I J, B G H J D -> B G H I D", scores, v)
    return attn.proj(out.permute(0, 1, 3, 2, 4).reshape(b, g, p, heads * d))


def _keep_relative_heads(attn, kept: torch.Tensor) -> None:
    """MaxViT's per-head parameters beyond qkv and proj: its relative position bias table (a column
    per head)."""
    table = attn.relative_position_bias_table
    attn.relative_position_bias_table = nn.Parameter(table.data.index_select(1, kept.to(table.device)))


def _keep_window_heads(attn, kept: torch.Tensor) -> None:
    """A Swin attention's per-head parameters beyond qkv and proj: V1's relative position bias table
    (a column per head), V2's bias MLP output (a row per head) and logit scale."""
    if hasattr(attn, "cpb_mlp"):
        _keep_rows(attn.cpb_mlp[2], kept)
        attn.logit_scale = nn.Parameter(attn.logit_scale.data.index_select(0, kept.to(attn.logit_scale.device)))
    else:
        table = attn.relative_position_bias_table
        attn.relative_position_bias_table = nn.Parameter(table.data.index_select(1, kept.to(table.device)))


def windowwise(model: nn.Module) -> nn.Module:
    """``model`` with every torchvision Swin window attention (V1 and V2) and MaxViT attention made
    head-prunable: its class becomes a subclass whose forward is :func:`_window_attention` (Swin) or
    :func:`_relative_attention` (MaxViT) and which knows its head width and head count, its
    parameters untouched (MaxViT's ``to_qkv`` and ``merge`` renamed ``qkv`` and ``proj``, their
    order kept; in place; returns the model)."""
    headed = _window_classes()
    for m in model.modules():
        if type(m) not in headed:
            continue
        if hasattr(m, "n_heads"):  # MaxViT
            names = {"to_qkv": "qkv", "merge": "proj"}
            m._modules = {names.get(k, k): v for k, v in m._modules.items()}
            m.num_heads = m.__dict__.pop("n_heads")
        else:
            m.head_dim = m.qkv.out_features // (3 * m.num_heads)
        m.__class__ = headed[type(m)]
    return model


@functools.cache
def _window_classes() -> dict[type, type]:
    """{torchvision's Swin attention class: its head-prunable subclass}, made on first use (importing
    torchvision's models takes seconds, and most commands never build a Swin)."""
    from torchvision.models.maxvit import RelativePositionalMultiHeadAttention
    from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2

    def headed(base, forward, keep_heads):
        return type(
            f"WindowHead{base.__name__}",
            (base,),
            {
                "__doc__": f"{base.__name__} whose heads can be removed (suite.models.transformers.windowwise).",
                "forward": forward,
                "keep_heads": keep_heads,
            },
        )

    return {
        ShiftedWindowAttention: headed(ShiftedWindowAttention, _window_attention, _keep_window_heads),
        ShiftedWindowAttentionV2: headed(ShiftedWindowAttentionV2, _window_attention, _keep_window_heads),
        RelativePositionalMultiHeadAttention: headed(
            RelativePositionalMultiHeadAttention, _relative_attention, _keep_relative_heads
        ),
    }


# ----------------------------------------------------------------------------- finding the units
def _linear(m) -> bool:
    return isinstance(m, nn.Linear)


def _is_attention(m: nn.Module) -> bool:
    qkv, proj = getattr(m, "qkv", None), getattr(m, "proj", None)
    heads, width = getattr(m, "num_heads", None), getattr(m, "head_dim", None)
    if not (_linear(qkv) and _linear(proj) and isinstance(heads, int) and isinstance(width, int)):
        return False
    if qkv.out_features != 3 * heads * width or proj.in_features != heads * width:
        return False
    # a norm or a gate over the heads' outputs would need slicing too: such heads stay whole
    if not isinstance(getattr(m, "norm", None), (nn.Identity, type(None))) or getattr(m, "gate", None) is not None:
        return False
    return _heads_removable(m)


# {attention module: ((heads, qkv rows), whether a head can leave it)}: the trial below runs once per shape
_TRIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _heads_removable(attn: nn.Module) -> bool:
    """Whether removing a head leaves the module working, tried on a copy on the meta device (shapes,
    no arithmetic): a module with tensors of its own that no rule here slices (EVA's separate q and v
    biases) or whose forward takes the head width from the embedding width (CrossViT's attention)
    fails the trial, and its heads stay whole. Its input: a few tokens, or a window for Swin's and
    MaxViT's. A module of one head (built so, or pruned to it) has no removal to try, and none is
    ever asked of it (no ratio removes a unit's last channel: ``n_pruned``): it is a unit of one
    head if nothing of its own needs a rule, so that a pruned model's units and their sizes read as
    the unpruned model's did."""
    key = (attn.num_heads, attn.qkv.out_features)
    if attn in _TRIED and _TRIED[attn][0] == key:
        return _TRIED[attn][1]
    own = [t for t in itertools.chain(attn.parameters(recurse=False), attn.buffers(recurse=False))]
    ok = hasattr(attn, "keep_heads") or not own
    if ok and attn.num_heads > 1:
        trial = copy.deepcopy(attn).to("meta").eval()
        ws, seq, width = getattr(attn, "window_size", None), getattr(attn, "max_seq_len", None), attn.qkv.in_features
        # a Swin window; a MaxViT window or grid of max_seq_len tokens ([B, G, P, D]); a few tokens
        shape = (1, *ws, width) if ws else (1, 1, seq, width) if seq else (1, 4, width)
        x = torch.zeros(shape, device="meta")
        call = (x, x, x) if isinstance(attn, HeadAttention) else (x,)
        try:
            with torch.no_grad():
                before = trial(*call)
                _keep_heads(trial, list(range(1, attn.num_heads)))
                after = trial(*call)
            before, after = (o[0] if isinstance(o, tuple) else o for o in (before, after))  # HeadAttention: (out, None)
            ok = before.shape == after.shape
        except Exception:  # any failure of the trial means: this module's heads cannot leave it
            ok = False
    _TRIED[attn] = (key, ok)
    return ok


def _linear_pair(seq: nn.Module, prefix: str = "") -> tuple[str, str] | None:
    """In a sequence of modules: the names of its two linear layers if it has exactly two, with
    only elementwise modules between them and the first's outputs the second's inputs."""
    layers = list(seq.named_children())
    linear = [i for i, (_, c) in enumerate(layers) if _linear(c)]
    if len(linear) == 2 and all(isinstance(c, _ELEMENTWISE) for _, c in layers[linear[0] + 1 : linear[1]]):
        (a, first), (b, second) = layers[linear[0]], layers[linear[1]]
        if first.out_features == second.in_features:
            return prefix + a, prefix + b
    return None


def _mlp_pair(m: nn.Module) -> tuple[str, str] | None:
    """The (first, second) linear layers' names inside ``m`` if ``m`` is an MLP (module docstring)."""
    from torchvision.models.convnext import CNBlock
    from torchvision.models.maxvit import PartitionAttentionLayer
    from torchvision.ops.misc import MLP

    if isinstance(m, MLP):
        return _linear_pair(m)
    if isinstance(m, CNBlock):  # ConvNeXt: depthwise conv, LayerNorm, then its MLP, on channels-last
        return _linear_pair(m.block, "block.")
    if isinstance(m, PartitionAttentionLayer):  # MaxViT: its attention's MLP
        return _linear_pair(m.mlp_layer, "mlp_layer.")
    fc1, fc2 = getattr(m, "fc1", None), getattr(m, "fc2", None)
    if _linear(fc1) and _linear(fc2) and fc1.out_features == fc2.in_features:
        if isinstance(getattr(m, "norm", None), (nn.Identity, type(None))):
            return "fc1", "fc2"
    return None


def transformer_units(model: nn.Module) -> dict[str, tuple[str, str, str, str]]:
    """{unit name: (kind, the module, its first layer, its second layer)} in model order: a head
    unit is named by its ``qkv`` (kind "heads"), an MLP unit by its first linear layer ("mlp")."""
    out = {}
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if _is_attention(m):
            out[f"{prefix}qkv"] = ("heads", name, f"{prefix}qkv", f"{prefix}proj")
        else:
            pair = _mlp_pair(m)
            if pair:
                out[f"{prefix}{pair[0]}"] = ("mlp", name, f"{prefix}{pair[0]}", f"{prefix}{pair[1]}")
    return out


def unit_size(model: nn.Module, unit: tuple[str, str, str, str]) -> int:
    """A unit's channels: an attention module's heads, an MLP's hidden width."""
    kind, module, first, _ = unit
    return model.get_submodule(module).num_heads if kind == "heads" else model.get_submodule(first).out_features


def head_rows(num_heads: int, head_dim: int) -> tuple[tuple[int, ...], ...]:
    """Per head, its rows of the fused qkv weight (laid out as [3, heads, head_dim] rows)."""
    width = num_heads * head_dim
    return tuple(
        tuple(part * width + h * head_dim + j for part in range(3) for j in range(head_dim)) for h in range(num_heads)
    )


def transformer_groups(model: nn.Module) -> dict[str, Group]:
    """{unit name: Group}: a head unit's rows are its heads' q, k, v rows of ``qkv``; an MLP
    unit's are its first layer's rows."""
    out = {}
    for name, unit in transformer_units(model).items():
        kind, module, first, _ = unit
        n = unit_size(model, unit)
        if kind == "heads":
            rows = head_rows(n, model.get_submodule(module).head_dim)
        else:
            rows = tuple(range(n))
        out[name] = Group(first, n, ((first, rows),))
    return out


# ----------------------------------------------------------------------------- the surgery
def fit_embedding_width(model: nn.Module) -> nn.Module:
    """After torch-pruning removed embedding channels (``suite.models.groups``, the ``embed`` kind):
    torchvision's ViT reshapes its patches by its ``hidden_dim`` attribute, which torch-pruning does
    not know of; it is set to the patch embedding's width again (in place; returns the model)."""
    for m in model.modules():
        if isinstance(getattr(m, "hidden_dim", None), int) and isinstance(getattr(m, "conv_proj", None), nn.Conv2d):
            m.hidden_dim = m.conv_proj.out_channels
    return model


def _keep_rows(layer: nn.Linear, keep: torch.Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight.data.index_select(0, keep.to(layer.weight.device)))
    if layer.bias is not None:
        layer.bias = nn.Parameter(layer.bias.data.index_select(0, keep.to(layer.bias.device)))
    layer.out_features = len(keep)


def _keep_columns(layer: nn.Linear, keep: torch.Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight.data.index_select(1, keep.to(layer.weight.device)))
    layer.in_features = len(keep)


def _keep_heads(attn: nn.Module, kept: list[int]) -> None:
    """Keep only the ``kept`` heads of an attention module (its ``qkv`` rows and ``proj`` columns,
    its head count, and what its ``keep_heads`` slices), in place."""
    n, d = attn.num_heads, attn.head_dim
    rows = torch.tensor([r for h in kept for r in head_rows(n, d)[h]]).view(len(kept), 3, d)
    _keep_rows(attn.qkv, rows.transpose(0, 1).flatten())  # q rows, then k, then v
    _keep_columns(attn.proj, torch.tensor([h * d + j for h in kept for j in range(d)]))
    attn.num_heads = len(kept)
    if hasattr(attn, "attn_dim"):
        attn.attn_dim = len(kept) * d
    if hasattr(attn, "keep_heads"):  # per-head parameters of its own (Swin's position bias)
        attn.keep_heads(torch.tensor(kept))


def remove_units(model: nn.Module, choice: dict[str, list[int]]) -> nn.Module:
    """Remove the chosen heads or MLP channels of each named unit, in place: the kept ones stay in
    order, an attention module's ``num_heads`` (and timm's ``attn_dim``) follow. Removing every
    channel of a unit is refused (the block would have no attention or no MLP)."""
    units = transformer_units(model)
    for name, idxs in choice.items():
        if not idxs:
            continue
        kind, module, first, second = units[name]
        n = unit_size(model, units[name])
        if len(set(idxs)) >= n or min(idxs) < 0 or max(idxs) >= n:
            raise SuiteError(
                f"cannot remove {len(idxs)} of the {n} {'heads' if kind == 'heads' else 'channels'} of {name}"
            )
        drop = set(idxs)
        kept = [i for i in range(n) if i not in drop]
        if kind == "heads":
            _keep_heads(model.get_submodule(module), kept)
        else:
            keep = torch.tensor(kept)
            _keep_rows(model.get_submodule(first), keep)
            _keep_columns(model.get_submodule(second), keep)
    return model
