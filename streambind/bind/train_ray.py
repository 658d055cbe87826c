"""Binding on Ray Train: the recipe in a ``TorchTrainer``, pairs through Ray Data.

The pairs file (Parquet, :mod:`streambind.bind.pairs`) is read with
``ray.data.read_parquet`` and split by time blocks into a training dataset (sharded over
the workers) and a validation dataset (read by rank 0 for R@1). Every worker runs
:func:`streambind.bind.recipe.train_step` with the batch negatives gathered from all
workers. Checkpoints (tower, optimizer, step, history) go to ``storage_path`` every
``checkpoint_every`` steps; a run with the same ``storage_path`` and ``name`` resumes from
the latest one. The same command scales from one CPU worker to many GPU workers.

Small machines: the workers take a fraction of a CPU each (``cpus_per_worker``), so Ray
Data's read tasks always find a CPU (a worker per core deadlocks on 2 cores), and the final
checkpoint is copied out of Ray's directory before that can be cleaned up.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from streambind.bind import recipe
from streambind.errors import StreambindError

logger = logging.getLogger(__name__)

TOWER_FILE = "tower.pt"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.pt"


class BindTrainError(StreambindError):
    """Ray Train did not produce a trained tower."""


@dataclass(frozen=True)
class RayBindConfig:
    """How the training runs (not what it learns: that is the RecipeConfig)."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 0.5  # < 1 leaves CPU to Ray Data on small machines
    storage_path: str = ""
    name: str = "bind"
    checkpoint_every: int = 50
    cache_bytes: int = 1 << 30  # a worker's shard up to this size is batched in memory


def _train_loop(config: dict) -> None:  # runs on every Ray Train worker
    import ray.train
    import ray.train.torch

    from streambind.model.kinds import tower_config_from_dict
    from streambind.model.towers import Tower

    cfg = recipe.RecipeConfig(**{**config["recipe"], "betas": tuple(config["recipe"]["betas"])})
    tower_cfg = tower_config_from_dict(config["tower"])
    shape = tuple(config["input_shape"])
    torch.manual_seed(cfg.seed)
    tower = Tower(tower_cfg, config["embed_dim"])
    tower.init_weights()
    state = recipe.TrainState()
    optimizer_state = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # resume
        with ckpt.as_directory() as d:
            tower.load_state_dict(torch.load(Path(d) / TOWER_FILE, weights_only=True))
            optimizer_state = torch.load(Path(d) / OPTIMIZER_FILE, weights_only=True)
            state = recipe.TrainState.from_dict(json.loads((Path(d) / STATE_FILE).read_text()))
    device = ray.train.torch.get_device()
    # DDP (several workers) averages the gradients; the loss itself is over the gathered
    # batch. ``inner`` is the plain tower, for rank-0-only validation and checkpoints.
    tower = ray.train.torch.prepare_model(tower)
    inner = getattr(tower, "module", tower)
    optimizer = recipe.make_optimizer(tower, cfg)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    gather = recipe.distributed_gather()
    rank = ray.train.get_context().get_world_rank()
    val_x = val_y = None
    if rank == 0:
        val_rows = ray.train.get_dataset_shard("val")
        xs, ys = [], []
        for b in val_rows.iter_batches(batch_size=256, batch_format="numpy"):
            xs.append(_sensor(b["sensor"], shape))
            ys.append(torch.from_numpy(np.stack(b["vision"]).astype(np.float32)))
        if xs:
            val_x, val_y = torch.cat(xs), torch.cat(ys)
    shard = ray.train.get_dataset_shard("train")
    if state.step < cfg.steps:
        for x, y in _batches(shard, shape, cfg, state.step, rank, config["cache_bytes"]):
            x, y = x.to(device), y.to(device)
            loss = recipe.train_step(tower, optimizer, x, y, cfg, state.step, gather)
            state.losses.append(loss)
            state.step += 1
            metrics = {"step": state.step, "loss": loss}
            last = state.step >= cfg.steps
            if last or state.step % cfg.eval_every == 0:
                if val_x is not None and len(val_x):
                    idx = np.arange(len(val_x))
                    r1 = recipe.validation_r1(inner, val_x.to(device), val_y.to(device), idx)
                    state.val_r1.append((state.step, r1))
                    metrics["val_r1"] = r1
            # Every worker reports at the same steps (a report is a barrier); rank 0 saves.
            if last or state.step % config["checkpoint_every"] == 0:
                with tempfile.TemporaryDirectory() as d:
                    if rank == 0:
                        torch.save({k: v.cpu() for k, v in inner.state_dict().items()},
                                   Path(d) / TOWER_FILE)
                        torch.save(optimizer.state_dict(), Path(d) / OPTIMIZER_FILE)
                        (Path(d) / STATE_FILE).write_text(json.dumps(state.as_dict()))
                        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
                    else:
                        ray.train.report(metrics)
            if last:
                break


def _batches(shard, shape: tuple[int, ...], cfg: recipe.RecipeConfig, step: int,  # noqa: ANN001
             rank: int, cache_bytes: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches (x (B, ...), frozen vision y (B, E)) of this worker's shard, forever.

    A shard that fits in ``cache_bytes`` is read once and batched in memory, in a
    permutation per epoch seeded by (seed, rank, epoch), so a resumed run continues the
    same sequence; a bigger one is streamed from Ray Data every epoch. (A small shard
    streamed would start a Ray Data execution every few steps: most of the run's time.)
    """
    cached = _cache_shard(shard, shape, cache_bytes)
    if cached is None:
        epoch = 0
        while True:
            for batch in shard.iter_batches(batch_size=cfg.batch_size, batch_format="numpy",
                                            drop_last=True, local_shuffle_buffer_size=1024,
                                            local_shuffle_seed=cfg.seed + step + epoch):
                yield _sensor(batch["sensor"], shape), _vision(batch["vision"])
            epoch += 1
    x_all, y_all = cached
    per_epoch = len(x_all) // cfg.batch_size
    if per_epoch == 0:
        raise BindTrainError(f"worker {rank} has {len(x_all)} training pairs, fewer than one "
                             f"batch of {cfg.batch_size}")
    while True:
        epoch, first = divmod(step, per_epoch)
        perm = torch.from_numpy(np.random.default_rng([cfg.seed, rank, epoch])
                                .permutation(len(x_all)))
        for k in range(first, per_epoch):
            idx = perm[k * cfg.batch_size : (k + 1) * cfg.batch_size]
            yield x_all[idx], y_all[idx]
            step += 1


def _cache_shard(shard, shape: tuple[int, ...], cache_bytes: int  # noqa: ANN001
                 ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The whole shard in memory ((N, ...), (N, E)), or None when it exceeds cache_bytes."""
    if cache_bytes <= 0:
        return None
    xs, ys, size = [], [], 0
    for b in shard.iter_batches(batch_size=1024, batch_format="numpy"):
        xs.append(_sensor(b["sensor"], shape))
        ys.append(_vision(b["vision"]))
        size += xs[-1].nbytes + ys[-1].nbytes
        if size > cache_bytes:
            logger.info("training shard exceeds %d bytes: streamed from Ray Data", cache_bytes)
            return None
    if not xs:
        raise BindTrainError("a worker got no training pairs")
    return torch.cat(xs), torch.cat(ys)


def _vision(column: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(column).astype(np.float32))


def _sensor(column: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    values = [bytes(v) for v in column]
    arr = np.frombuffer(b"".join(values), dtype="<f4").reshape(len(values), *shape)
    return torch.from_numpy(arr.copy())


def split_parquet(pairs_path: str | Path, out_dir: str | Path, block_s: float,
                  val_every: int) -> tuple[Path, Path, int, int]:
    """Split the pairs file by contiguous time blocks into train.parquet and val.parquet."""
    import pyarrow.parquet as pq

    table = pq.read_table(pairs_path)
    train, val = recipe.time_block_split(table.column("start_ns").to_numpy(),
                                         table.column("end_ns").to_numpy(),
                                         int(block_s * 1e9), val_every)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.parquet", out / "val.parquet"
    pq.write_table(table.take(train), paths[0])
    pq.write_table(table.take(val), paths[1])
    return paths[0], paths[1], len(train), len(val)


def train_on_ray(pairs_path: str | Path, meta: dict, embed_dim: int, cfg: recipe.RecipeConfig,
                 ray_cfg: RayBindConfig, *, block_s: float = 60.0, val_every: int = 5
                 ) -> tuple[dict[str, torch.Tensor], recipe.TrainState, dict]:
    """Train the tower of the pairs file on Ray Train; returns its state dict, its training
    history and the split sizes. Starts a local Ray (2 CPUs) if none is running."""
    import ray
    import ray.data
    from ray.train import CheckpointConfig, DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = Path(ray_cfg.storage_path or tempfile.mkdtemp(prefix="streambind-bind-"))
    storage = storage.resolve()
    train_p, val_p, n_train, n_val = split_parquet(pairs_path, storage / "pairs", block_s,
                                                   val_every)
    if n_train < cfg.batch_size * ray_cfg.num_workers:
        raise BindTrainError(f"{n_train} training pairs are fewer than one batch of "
                             f"{cfg.batch_size} per worker")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(2, os.cpu_count() or 2) if ray_cfg.use_gpu else 2,
                 include_dashboard=False, log_to_driver=False)
    try:
        datasets = {"train": ray.data.read_parquet(str(train_p)),
                    "val": ray.data.read_parquet(str(val_p))}
        loop_config = {"recipe": asdict(cfg), "tower": meta["tower"],
                       "input_shape": meta["input_shape"], "embed_dim": embed_dim,
                       "checkpoint_every": ray_cfg.checkpoint_every,
                       "cache_bytes": ray_cfg.cache_bytes}
        run_config = RunConfig(storage_path=str(storage), name=ray_cfg.name,
                               checkpoint_config=CheckpointConfig(num_to_keep=2))
        scaling = ScalingConfig(num_workers=ray_cfg.num_workers, use_gpu=ray_cfg.use_gpu,
                                resources_per_worker={"CPU": ray_cfg.cpus_per_worker})
        # Ray Train resumes a run by itself when the same storage path and name hold a
        # checkpoint (the loop then starts from ray.train.get_checkpoint()).
        trainer = TorchTrainer(_train_loop, train_loop_config=loop_config,
                               scaling_config=scaling, run_config=run_config,
                               datasets=datasets,
                               dataset_config=DataConfig(datasets_to_split=["train"]))
        result = trainer.fit()
        if result.error is not None:
            raise BindTrainError(f"Ray Train failed: {result.error}") from result.error
        if result.checkpoint is None:
            raise BindTrainError("Ray Train finished without a checkpoint")
        # Copy the checkpoint out now: in local mode it may live in a temporary directory.
        final = storage / "final"
        shutil.rmtree(final, ignore_errors=True)
        result.checkpoint.to_directory(str(final))
    finally:
        if started:
            ray.shutdown()
    tower_state = torch.load(final / TOWER_FILE, weights_only=True)
    state = recipe.TrainState.from_dict(json.loads((final / STATE_FILE).read_text()))
    return tower_state, state, {"train_pairs": n_train, "val_pairs": n_val}
