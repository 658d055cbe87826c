"""One tower per modality: stem (input -> tokens), transformer trunk, head, logit scale.

The six towers of ImageBind and the bound ``series``/``frame`` kinds share these stems.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streambind.errors import StreambindError
from streambind.model.config import (
    AudioConfig,
    DepthConfig,
    ImuConfig,
    TextConfig,
    ThermalConfig,
    TowerConfig,
    VisionConfig,
)
from streambind.model.kinds import FrameConfig, SeriesConfig
from streambind.model.layers import TRUNK_LN_EPS, Attention, Transformer


class ModelInputError(StreambindError, ValueError):
    """An input tensor does not fit the tower it is given to (shape, dtype, modality)."""


def _check_shape(modality: str, x: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(x.shape[1:]) != expected:
        raise ModelInputError(
            f"{modality}: expected input of shape (B, {', '.join(map(str, expected))}), "
            f"got {tuple(x.shape)}"
        )


class PatchStem(nn.Module):
    """Patches -> tokens, a class token in front, learned positions added.

    Used by audio, depth and thermal (a 2-D convolution followed by LayerNorm) and, with a
    3-D convolution and no LayerNorm, by vision.
    """

    def __init__(self, proj: nn.Module, width: int, num_patches: int, norm: bool):
        super().__init__()
        self.proj = proj
        self.norm = nn.LayerNorm(width) if norm else None
        self.cls_token = nn.Parameter(torch.empty(1, 1, width))
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + num_patches, width))
        self.pool_at_cls = True

    def tokens(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)
        if self.norm is not None:
            x = self.norm(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        return torch.cat([cls, x], dim=1) + self.pos_embed  # (B, 1 + N, D)

    @torch.no_grad()
    def init_weights(self) -> None:
        # OpenCLIP style, as the reference: N(0, 1) scaled by D^-1/2.
        scale = self.cls_token.shape[-1] ** -0.5
        nn.init.normal_(self.cls_token, std=scale)
        nn.init.normal_(self.pos_embed, std=scale)


class VisionStem(PatchStem):
    """(B, 3, H, W) image or (B, 3, T, H, W) clip -> (B, 1 + T'H'W', D) tokens."""

    input_ndims = (4, 5)

    def __init__(self, cfg: VisionConfig):
        t, h, w = cfg.patch_size
        n = (cfg.frames // t) * (cfg.image_size // h) * (cfg.image_size // w)
        proj = nn.Conv3d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size,
                         bias=False)
        super().__init__(proj, cfg.width, n, norm=False)
        self.frames = cfg.frames
        self.input_shape = (3, cfg.frames, cfg.image_size, cfg.image_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)  # an image is a clip of one frame: (B, 3, 1, H, W)
        if x.shape[2] == 1:
            # The reference repeats a still frame rather than zero-padding time.
            x = x.expand(-1, -1, self.frames, -1, -1)
        _check_shape("vision", x, self.input_shape)
        return self.tokens(x)


class Conv2dStem(PatchStem):
    """(B, 1, H, W) spectrogram, depth/thermal map or bound frame -> (B, 1 + N, D) tokens."""

    input_ndims = (4,)

    def __init__(self, modality: str, size: tuple[int, int], kernel: int, stride: int,
                 width: int, input_shift: float = 0.0, input_scale: float = 1.0):
        grid = [(s - kernel) // stride + 1 for s in size]
        proj = nn.Conv2d(1, width, kernel_size=kernel, stride=stride, bias=False)
        super().__init__(proj, width, math.prod(grid), norm=True)
        self.modality = modality
        self.input_shape = (1, *size)
        # A fixed input standardization (DepthConfig.input_shift/scale); plain floats, not
        # buffers, so that the state dict keeps the reference's keys.
        self.input_shift, self.input_scale = float(input_shift), float(input_scale)

    def forward(self, x: Tensor) -> Tensor:
        _check_shape(self.modality, x, self.input_shape)
        if self.input_shift != 0.0 or self.input_scale != 1.0:
            x = (x - self.input_shift) / self.input_scale
        return self.tokens(x)


class SeriesStem(nn.Module):
    """(B, C, T) series -> windows of k samples x C channels -> (B, 1 + T/k, D) tokens.

    The IMU tower is this stem with C=6, T=2000, k=8; bound ``series`` towers choose theirs.
    """

    input_ndims = (3,)

    def __init__(self, modality: str, channels: int, samples: int, kernel: int, width: int):
        super().__init__()
        self.modality = modality
        self.kernel_size = kernel
        self.input_shape = (channels, samples)
        self.proj = nn.Linear(channels * kernel, width, bias=False)
        self.norm = nn.LayerNorm(width)
        self.cls_token = nn.Parameter(torch.empty(1, 1, width))
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + samples // kernel, width))
        self.pool_at_cls = True

    def forward(self, x: Tensor) -> Tensor:
        _check_shape(self.modality, x, self.input_shape)
        B, C, _ = x.shape
        # (B, C, T) -> (B, C, N, k) -> (B, N, C, k) -> (B, N, C*k): a window is channel-major.
        x = x.unfold(-1, self.kernel_size, self.kernel_size).permute(0, 2, 1, 3)
        x = self.norm(self.proj(x.reshape(B, x.shape[1], -1)))  # (B, N, D)
        cls = self.cls_token.expand(B, -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed  # (B, 1 + N, D)

    @torch.no_grad()
    def init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=self.cls_token.shape[-1] ** -0.5)
        nn.init.normal_(self.pos_embed, std=0.01)


class TextStem(nn.Module):
    """(B, 77) token ids -> (B, 77, D) tokens; causal attention, pooled at end-of-text."""

    input_ndims = (2,)

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.context_length = cfg.context_length
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_embed = nn.Parameter(torch.empty(1, cfg.context_length, cfg.width))
        # Built once. Additive (0 / -inf) and persistent because the official checkpoint
        # stores it, which keeps the key mapping a pure renaming.
        mask = torch.full((cfg.context_length, cfg.context_length), float("-inf")).triu_(1)
        self.register_buffer("causal_mask", mask)
        self.pool_at_cls = False

    def forward(self, x: Tensor) -> Tensor:
        _check_shape("text", x, (self.context_length,))
        if x.dtype not in (torch.int64, torch.int32):
            raise ModelInputError(f"text: expected integer token ids, got {x.dtype}")
        return self.token_embedding(x) + self.pos_embed  # (B, L, D)

    @torch.no_grad()
    def init_weights(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)


class Head(nn.Module):
    """Pooled token -> LayerNorm -> linear projection into the joint space -> L2 normalize
    -> logit scale (``exp(log_logit_scale)`` clipped at 100, as the reference)."""

    max_logit_scale = 100.0

    def __init__(self, cfg: TowerConfig, embed_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.width, eps=TRUNK_LN_EPS)
        self.dropout = nn.Dropout(cfg.head_dropout) if cfg.head_dropout else nn.Identity()
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)
        self.log_logit_scale: Tensor | None
        if cfg.logit_scale is None:
            self.log_logit_scale = None
        else:
            init = torch.tensor(math.log(cfg.logit_scale))
            if cfg.learnable_logit_scale:
                self.log_logit_scale = nn.Parameter(init)
            else:
                self.register_buffer("log_logit_scale", init)

    def forward(self, pooled: Tensor) -> Tensor:
        x = self.proj(self.dropout(self.norm(pooled)))  # (B, E)
        # Normalize and scale in float32: half-precision towers still give unit vectors.
        x = F.normalize(x.float(), dim=-1)
        if self.log_logit_scale is not None:
            x = x * self.log_logit_scale.float().exp().clamp(max=self.max_logit_scale)
        return x


def _make_stem(cfg: TowerConfig) -> nn.Module:
    if isinstance(cfg, VisionConfig):
        return VisionStem(cfg)
    if isinstance(cfg, TextConfig):
        return TextStem(cfg)
    if isinstance(cfg, AudioConfig):
        return Conv2dStem("audio", (cfg.num_mel_bins, cfg.target_len), cfg.kernel_size,
                          cfg.stride, cfg.width)
    if isinstance(cfg, DepthConfig):
        size = (cfg.image_size, cfg.image_size)
        return Conv2dStem("depth", size, cfg.kernel_size, cfg.kernel_size, cfg.width,
                          cfg.input_shift, cfg.input_scale)
    if isinstance(cfg, ThermalConfig):
        size = (cfg.image_size, cfg.image_size)
        return Conv2dStem("thermal", size, cfg.kernel_size, cfg.kernel_size, cfg.width)
    if isinstance(cfg, FrameConfig):
        return Conv2dStem(cfg.modality, (cfg.height_px, cfg.width_px), cfg.patch_px,
                          cfg.patch_px, cfg.width)
    if isinstance(cfg, ImuConfig):
        return SeriesStem("imu", cfg.channels, cfg.length, cfg.kernel_size, cfg.width)
    if isinstance(cfg, SeriesConfig):
        return SeriesStem(cfg.modality, cfg.channels, cfg.samples, cfg.patch_samples, cfg.width)
    raise TypeError(f"no stem for {type(cfg).__name__}")


class Tower(nn.Module):
    """Embeds one modality. ``forward`` takes a batch of items, or a batch of clips of items
    (one extra axis after the batch), and returns float32 embeddings of shape (B, E)."""

    def __init__(self, cfg: TowerConfig, embed_dim: int):
        super().__init__()
        self.modality = cfg.modality
        self.stem = _make_stem(cfg)
        self.trunk = Transformer(cfg)
        self.head = Head(cfg, embed_dim)

    @property
    def clip_ndim(self) -> int:
        """Number of input dims at which the second axis is read as clips to average."""
        return max(self.stem.input_ndims) + 1

    def embed_items(self, x: Tensor) -> Tensor:
        """Embed a batch without a clip axis: (B, ...) -> (B, E)."""
        tokens = self.stem(x)  # (B, L, D)
        mask = getattr(self.stem, "causal_mask", None)
        tokens = self.trunk(tokens, mask)  # (B, L, D)
        if self.stem.pool_at_cls:
            pooled = tokens[:, 0]  # (B, D)
        else:
            # The end-of-text token has the largest id (49407): its first position.
            pooled = tokens[torch.arange(tokens.shape[0], device=tokens.device), x.argmax(-1)]
        return self.head(pooled)  # (B, E)

    def forward(self, x: Tensor) -> Tensor:
        param = self.head.proj.weight
        x = x.to(param.device)
        if x.is_floating_point():
            x = x.to(param.dtype)
        if x.ndim == self.clip_ndim:
            B, S = x.shape[:2]
            emb = self.embed_items(x.flatten(0, 1))  # (B*S, E)
            return emb.view(B, S, -1).mean(dim=1)  # (B, E): the reference averages clips
        if x.ndim not in self.stem.input_ndims:
            raise ModelInputError(
                f"{self.modality}: expected a tensor of {self.stem.input_ndims} dims "
                f"(or {self.clip_ndim} with a clip axis), got shape {tuple(x.shape)}"
            )
        return self.embed_items(x)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialise as the reference does (xavier linears, OpenCLIP-style embeddings)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, Attention) and m.bias_k is not None:
                nn.init.xavier_normal_(m.bias_k)
                nn.init.xavier_normal_(m.bias_v)
        self.stem.init_weights()
