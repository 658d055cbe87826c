"""The model cache: the official huge checkpoint (download, SHA-256 checks) and the world
model's directory."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from streambind.errors import CheckpointError

logger = logging.getLogger(__name__)

HUGE_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
HUGE_FILENAME = "imagebind_huge.pth"
CACHE_ENV = "STREAMBIND_CACHE"
SHA256_ENV = "STREAMBIND_IMAGEBIND_SHA256"
WORLD_DIRNAME = "world"
MANIFEST_NAME = "manifest.json"  # of a bound-model directory (streambind.model.bound)
# What `streambind world --train` trains, as a number recorded in the model's manifest
# ("extra": {"recipe_version": N}). Raise it whenever a change to the training, the world
# or the world preset makes a model trained before it different from one trained after:
# a cached world model of another version is then retrained instead of silently reused.
# 1: models without the field; 2: the depth tower's input standardization.
WORLD_RECIPE_VERSION = 2


def default_cache_dir() -> Path:
    """``$STREAMBIND_CACHE``, else ``$XDG_CACHE_HOME/streambind``, else ``~/.cache/streambind``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "streambind"


def checkpoint_cache_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the official huge checkpoint lives (or will be downloaded to)."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / HUGE_FILENAME


def huge_checkpoint_available(cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the huge checkpoint is already in the cache (no download, no hashing)."""
    return checkpoint_cache_path(cache_dir).is_file()


def world_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the world model (``--model world``) is cached: ``<cache dir>/world/``, a
    bound-model directory written by ``streambind world --train``."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / WORLD_DIRNAME


def world_model_available(cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the world model has been built (its manifest exists; nothing is read)."""
    return (world_model_dir(cache_dir) / MANIFEST_NAME).is_file()


def world_model_recipe(cache_dir: str | os.PathLike[str] | None = None) -> int | None:
    """The recipe version the cached world model was trained with (1 when its manifest
    does not say); None when there is none or its manifest cannot be read."""
    try:
        manifest = json.loads((world_model_dir(cache_dir) / MANIFEST_NAME).read_text("utf-8"))
        extra = manifest.get("extra") or {}
        return int(extra.get("recipe_version", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def world_model_current(cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the cached world model is what this version trains (see
    ``WORLD_RECIPE_VERSION``)."""
    return world_model_recipe(cache_dir) == WORLD_RECIPE_VERSION


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def sha256_file(path: Path, chunk_size: int = 1 << 24) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _write_sidecar(path: Path, digest: str) -> None:
    # sha256sum format, so `sha256sum -c imagebind_huge.pth.sha256` works in the cache dir.
    try:
        _sidecar(path).write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    except OSError as exc:
        # A read-only weights volume (Kubernetes) still loads; it just can't record the hash.
        logger.warning("cannot record SHA-256 next to %s (%s); set $%s to pin it",
                       path, exc, SHA256_ENV)


def _read_sidecar(path: Path) -> str | None:
    try:
        text = _sidecar(path).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    return text[0].lower() if text else None


def download_checkpoint(
    url: str, dest: Path, *, expected_sha256: str | None = None, progress: bool = True
) -> str:
    """Download ``url`` to ``dest`` through a temporary file in the same directory, hashing
    as it goes; the file is renamed into place only when complete and (if an expected hash
    is given) verified. Writes ``dest.sha256`` and returns the hex digest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(url, timeout=60) as response,  # noqa: S310 (our URL)
            ):
                total = response.headers.get("Content-Length")
                with tqdm(
                    total=int(total) if total else None, unit="B", unit_scale=True,
                    unit_divisor=1024, desc=dest.name, disable=not progress,
                ) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"could not download {url}: {exc}. If this machine is offline, download the "
                f"file elsewhere and place it at {dest} (the cache directory is set by "
                f"${CACHE_ENV})"
            ) from exc
        hexdigest = digest.hexdigest()
        if expected_sha256 and hexdigest != expected_sha256:
            raise CheckpointError(
                f"download of {url} has SHA-256 {hexdigest}, expected {expected_sha256}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _write_sidecar(dest, hexdigest)
    logger.info("downloaded %s to %s (sha256 %s)", url, dest, hexdigest)
    return hexdigest


def ensure_huge_checkpoint(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    url: str = HUGE_URL,
    expected_sha256: str | None = None,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """Return the path of the cached huge checkpoint, downloading it once if needed.

    Integrity: Meta publishes no checksum for ``imagebind_huge.pth``, so none is built in.
    If ``expected_sha256`` (or ``$STREAMBIND_IMAGEBIND_SHA256``) is given, the file must
    match it. Otherwise the hash is recorded in ``imagebind_huge.pth.sha256`` when the file
    is first downloaded (or first seen, if placed by hand) and every later load verifies
    against that record: this catches corruption and truncation in the cache, not a file
    that was already wrong when first fetched.
    """
    expected = (expected_sha256 or os.environ.get(SHA256_ENV) or "").strip().lower() or None
    path = checkpoint_cache_path(cache_dir)
    if not path.is_file():
        if not download:
            raise CheckpointError(
                f"the ImageBind huge checkpoint is not cached: download {url} and place it at "
                f"{path} (or set ${CACHE_ENV} to the directory that holds {HUGE_FILENAME})"
            )
        logger.info("downloading the ImageBind huge checkpoint to %s", path)
        download_checkpoint(url, path, expected_sha256=expected, progress=progress)
        return path
    recorded = _read_sidecar(path)
    want = expected or recorded
    actual = sha256_file(path)
    if want is not None and actual != want:
        raise CheckpointError(
            f"{path} has SHA-256 {actual} but {want} was expected "
            f"({'given' if expected else 'recorded at first download'}); the file is corrupt "
            "or was replaced: delete it to download it again"
        )
    if recorded != actual:
        _write_sidecar(path, actual)
        if recorded is None:
            logger.info("recorded SHA-256 %s of %s for later checks", actual, path)
    return path
