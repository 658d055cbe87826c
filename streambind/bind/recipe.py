"""The binding recipe of ImageBind (Girdhar et al., CVPR 2023), in plain PyTorch.

Only the new modality's tower (stem, trunk, head) is trained; the paired modality's tower
(vision) is frozen and its embeddings are computed once and cached. The loss is the
symmetric InfoNCE of the paper (eq. 1 and its mirror) with the other items of the batch as
negatives (gathered across workers when there are several) and a fixed temperature per
modality (paper Table 9). AdamW with betas (0.9, 0.95), linear warm-up then cosine decay,
gradient-norm clipping. Validation is on contiguous time blocks: hopping windows overlap,
so a random split would put half of a validation window in the training set.

Everything here is pure (tensors in, tensors out) so that the local trainer, the Ray
Train workers and the tests run the same code.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streambind.errors import ConfigError

logger = logging.getLogger(__name__)

#: Paper Table 9: the InfoNCE temperature per bound modality (fixed, not learned).
PAPER_TEMPERATURES: dict[str, float] = {"audio": 0.05, "depth": 0.2, "thermal": 0.1, "imu": 0.2}
#: New sensor kinds take the temperature of their closest paper modality:
#: a multichannel series is bound like the IMU, a single-channel frame like depth.
KIND_TEMPERATURES: dict[str, float] = {"series": 0.2, "frame": 0.2}

#: A gather that concatenates every worker's batch (B_total, E) and says where ours starts.
Gather = Callable[[Tensor], tuple[Tensor, int]]


def temperature_for(modality: str, kind: str | None = None) -> float:
    """The fixed temperature for a modality (paper Table 9) or a new sensor kind."""
    if modality in PAPER_TEMPERATURES:
        return PAPER_TEMPERATURES[modality]
    if kind in KIND_TEMPERATURES:
        return KIND_TEMPERATURES[kind]
    raise ConfigError(f"no default temperature for modality {modality!r} (kind {kind!r})")


@dataclass(frozen=True)
class RecipeConfig:
    """Hyper-parameters of one binding run. ``temperature`` is fixed for the run."""

    temperature: float
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3  # peak learning rate (after warm-up)
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 20
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global L2 norm of the gradients
    eval_every: int = 50  # steps between validation R@1 on the progress bar
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.temperature <= 10:
            raise ConfigError(f"temperature must be in (0, 10], got {self.temperature}")
        if self.steps <= 0 or self.batch_size < 2:
            raise ConfigError("steps must be positive and batch_size at least 2")
        if self.warmup_steps < 0 or self.lr <= 0 or self.grad_clip <= 0:
            raise ConfigError("warmup_steps >= 0, lr > 0 and grad_clip > 0 are required")


def symmetric_info_nce(
    a: Tensor, b: Tensor, temperature: float, gather: Gather | None = None
) -> Tensor:
    """Symmetric InfoNCE between paired rows of ``a`` (B, E) and ``b`` (B, E).

    Row i of ``a`` is positive with row i of ``b``; every other row of the (gathered) batch
    is a negative. Both are L2-normalized here, so a tower's logit scale does not matter.
    With ``gather``, our rows are scored against every worker's rows (the gather must keep
    gradients, as ``torch.distributed.nn.all_gather`` does) and the loss is over our rows.
    """
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    if gather is None:
        all_a, all_b, offset = a, b, 0
    else:
        all_a, offset = gather(a)
        all_b, _ = gather(b)
    targets = torch.arange(a.shape[0], device=a.device) + offset  # (B,)
    logits_ab = a @ all_b.T / temperature  # (B, B_total)
    logits_ba = b @ all_a.T / temperature  # (B, B_total)
    return 0.5 * (F.cross_entropy(logits_ab, targets) + F.cross_entropy(logits_ba, targets))


def distributed_gather() -> Gather | None:
    """A gradient-keeping all-gather over the default process group, or None when alone."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    from torch.distributed.nn.functional import all_gather

    def gather(x: Tensor) -> tuple[Tensor, int]:
        parts = all_gather(x.contiguous())  # world_size x (B, E); equal B on every rank
        return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]

    return gather


def lr_at(step: int, cfg: RecipeConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine to the floor."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(module: nn.Module, cfg: RecipeConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on norms, biases and tokens."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "token" in name or "pos_embed" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr_at(0, cfg), betas=cfg.betas)


def train_step(
    tower: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    target: Tensor,
    cfg: RecipeConfig,
    step: int,
    gather: Gather | None = None,
) -> float:
    """One optimizer step of ``tower`` on inputs ``x`` (B, ...) against frozen ``target``
    embeddings (B, E). Returns the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    tower.train()
    loss = symmetric_info_nce(tower(x), target, cfg.temperature, gather)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tower.parameters(), cfg.grad_clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def embed(tower: nn.Module, x: Tensor, batch_size: int = 64) -> Tensor:
    """Embed ``x`` (N, ...) in eval mode, in batches; returns L2-normalized (N, E)."""
    was_training = tower.training
    tower.eval()
    out = [F.normalize(tower(x[i : i + batch_size]).float(), dim=-1)
           for i in range(0, x.shape[0], batch_size)]
    tower.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def recall_at_k(queries: Tensor, keys: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Retrieval recall: row i of ``queries`` (N, E) should find row i of ``keys`` (N, E)."""
    if queries.shape[0] == 0:
        return {k: float("nan") for k in ks}
    sims = F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T  # (N, N)
    rank = (sims > sims.diagonal()[:, None]).sum(dim=1)  # (N,): better-scored wrong keys
    return {k: float((rank < k).float().mean()) for k in ks}


def time_block_split(
    start_ns: np.ndarray, end_ns: np.ndarray, block_ns: int, val_every: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Split windows by contiguous time blocks: every ``val_every``-th block (epoch-aligned,
    by index) is validation. A window that touches blocks of both splits is dropped, so no
    sample is shared between a training and a validation window. Returns index arrays."""
    if block_ns <= 0 or val_every < 2:
        raise ConfigError("block_ns must be positive and val_every at least 2")
    start_ns = np.asarray(start_ns, dtype=np.int64)
    end_ns = np.asarray(end_ns, dtype=np.int64)
    first = (start_ns // block_ns).tolist()
    last = ((end_ns - 1) // block_ns).tolist()
    train: list[int] = []
    val: list[int] = []
    for i, (f, lo) in enumerate(zip(first, last, strict=True)):
        is_val = {b % val_every == val_every - 1 for b in range(f, max(f, lo) + 1)}
        if is_val == {False}:
            train.append(i)
        elif is_val == {True}:
            val.append(i)
    return np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)


@dataclass
class TrainState:
    """What a binding run has done so far (for checkpoints, resumes and the manifest)."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    val_r1: list[tuple[int, float]] = field(default_factory=list)  # (step, R@1)

    def as_dict(self) -> dict:
        """JSON-serializable form."""
        return {"step": self.step, "losses": self.losses, "val_r1": self.val_r1}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        """Inverse of :meth:`as_dict`."""
        return cls(int(d["step"]), [float(x) for x in d["losses"]],
                   [(int(s), float(r)) for s, r in d["val_r1"]])


def fit(
    tower: nn.Module,
    x: Tensor,
    target: Tensor,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: RecipeConfig,
    *,
    progress: bool = True,
    desc: str = "bind",
    state: TrainState | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    on_step: Callable[[TrainState], None] | None = None,
) -> TrainState:
    """Train ``tower`` on sensor inputs ``x`` (N, ...) against cached frozen embeddings
    ``target`` (N, E), in one process. Shows a tqdm bar (step, loss, validation R@1)."""
    from tqdm.auto import tqdm

    if len(train_idx) < cfg.batch_size:
        raise ConfigError(
            f"{len(train_idx)} training pairs are fewer than one batch of {cfg.batch_size}"
        )
    state = state or TrainState()
    optimizer = optimizer or make_optimizer(tower, cfg)
    rng = np.random.default_rng(cfg.seed + state.step)
    order: list[int] = []
    bar = tqdm(total=cfg.steps, initial=state.step, desc=desc, disable=not progress)
    while state.step < cfg.steps:
        if len(order) < cfg.batch_size:
            order.extend(rng.permutation(train_idx).tolist())
        idx = torch.as_tensor(order[: cfg.batch_size])
        del order[: cfg.batch_size]
        loss = train_step(tower, optimizer, x[idx], target[idx], cfg, state.step)
        state.losses.append(loss)
        state.step += 1
        if len(val_idx) and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
            r1 = validation_r1(tower, x, target, val_idx)
            state.val_r1.append((state.step, r1))
        postfix = {"loss": f"{loss:.3f}"}
        if state.val_r1:
            postfix["val_R@1"] = f"{state.val_r1[-1][1]:.3f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
        if on_step is not None:
            on_step(state)
    bar.close()
    return state


def validation_r1(tower: nn.Module, x: Tensor, target: Tensor, val_idx: np.ndarray) -> float:
    """Sensor -> paired-modality R@1 on the validation windows."""
    idx = torch.as_tensor(np.asarray(val_idx))
    return recall_at_k(embed(tower, x[idx]), target[idx], ks=(1,))[1]


def freeze(module: nn.Module) -> nn.Module:
    """Freeze ``module`` in eval mode (its embeddings are cached once, never trained)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
