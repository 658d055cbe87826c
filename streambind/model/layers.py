"""Transformer building blocks shared by every tower (batch-first, pre-norm)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streambind.model.config import TowerConfig

#: ``"sdpa"`` uses ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels);
#: ``"math"`` is the plain q @ k^T -> softmax -> @ v of the reference, kept for benchmarks.
ATTENTION_IMPLS = ("sdpa", "math")

# The reference uses LayerNorm(eps=1e-6) inside the trunks and heads, PyTorch's default
# (1e-5) in the stems. Getting this wrong costs ~1e-5 relative error, so it is explicit.
TRUNK_LN_EPS = 1e-6


def math_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Attention written out as the reference computes it: q is scaled before q @ k^T.

    q: (B, H, L, d), k and v: (B, H, S, d), mask: additive (L, S) or None.
    """
    q = q * (1.0 / math.sqrt(q.shape[-1]))
    scores = q @ k.transpose(-2, -1)  # (B, H, L, S)
    if mask is not None:
        scores = scores + mask
    # Softmax in float32 so that half-precision scores do not lose the row maximum.
    weights = scores.float().softmax(dim=-1).to(v.dtype)
    return weights @ v  # (B, H, L, d)


class Attention(nn.Module):
    """Multi-head self-attention with the parameter set of ``nn.MultiheadAttention``.

    ``bias_kv`` appends one learned key and value token (after the input projection), as
    ``nn.MultiheadAttention(add_bias_kv=True)`` does; every query can attend to it, so the
    additive mask, if any, gets a zero column for it.
    """

    def __init__(self, width: int, heads: int, bias_kv: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        if bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, width))
            self.bias_v = nn.Parameter(torch.empty(1, 1, width))
        else:
            self.bias_k = self.bias_v = None
        self.impl = "sdpa"

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, L, D)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(B, 1, D)], dim=1)  # (B, L+1, D)
            v = torch.cat([v, self.bias_v.expand(B, 1, D)], dim=1)
            if mask is not None:
                mask = F.pad(mask, (0, 1))  # (L, L+1): the extra token is never masked
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        if mask is not None:
            mask = mask.to(q.dtype)
        if self.impl == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, d)
        else:
            y = math_attention(q, k, v, mask)
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()  # exact erf GELU, as the reference
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: TowerConfig, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=TRUNK_LN_EPS)
        self.attn = Attention(cfg.width, cfg.heads, cfg.bias_kv)
        self.norm2 = nn.LayerNorm(cfg.width, eps=TRUNK_LN_EPS)
        self.mlp = MLP(cfg.width, cfg.mlp_ratio * cfg.width)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Transformer(nn.Module):
    """The trunk of a tower: optional input LayerNorm, then ``cfg.depth`` blocks."""

    def __init__(self, cfg: TowerConfig):
        super().__init__()
        self.pre_norm = nn.LayerNorm(cfg.width, eps=TRUNK_LN_EPS) if cfg.pre_norm else None
        # Stochastic depth grows linearly from 0 at the first block to cfg.drop_path.
        rates = torch.linspace(0, cfg.drop_path, cfg.depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(Block(cfg, rate) for rate in rates)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x, mask)
        return x  # (B, L, D)


def set_attention_impl(module: nn.Module, impl: str) -> None:
    """Switch every attention layer under ``module`` to ``"sdpa"`` or ``"math"``."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    for m in module.modules():
        if isinstance(m, Attention):
            m.impl = impl
