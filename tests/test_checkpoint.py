"""Official-layout checkpoints: key mapping, strict loading, download, cache and SHA-256."""

import hashlib

import pytest
import torch

from streambind.errors import CheckpointError, ConfigError
from streambind.model import (
    ImageBindConfig,
    checkpoint_cache_path,
    huge_checkpoint_available,
    load_imagebind,
    official_key_to_ours,
    ours_key_to_official,
)
from streambind.model.cache import HUGE_FILENAME
from streambind.model.checkpoint import read_checkpoint

TINY = ImageBindConfig.tiny()


@pytest.fixture(scope="module")
def official_sd():
    """A tiny model's weights in the official key layout (as the reference would save them)."""
    model = load_imagebind("tiny")
    with torch.no_grad():  # make the check sensitive to every tensor, not just the init
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.add_(0.01 * torch.randn_like(v))
    return {ours_key_to_official(k): v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def imu_batch():
    return {"imu": torch.randn(2, 6, 2000, generator=torch.Generator().manual_seed(3))}


def assert_same_weights(model, official_sd):
    sd = model.state_dict()
    assert len(sd) == len(official_sd)
    for key, value in official_sd.items():
        assert torch.equal(sd[official_key_to_ours(key)], value), key


def test_key_mapping_is_a_bijection(official_sd):
    ours = [official_key_to_ours(k) for k in official_sd]
    assert len(set(ours)) == len(ours)
    assert [ours_key_to_official(k) for k in ours] == list(official_sd)
    assert official_key_to_ours("modality_preprocessors.vision.rgbt_stem.proj.1.weight") == (
        "towers.vision.stem.proj.weight"
    )
    assert official_key_to_ours("modality_trunks.audio.blocks.1.attn.in_proj_weight") == (
        "towers.audio.trunk.blocks.1.attn.qkv.weight"
    )
    with pytest.raises(KeyError):
        official_key_to_ours("modality_trunks.vision.blocks.0.attn.nonsense")


def test_round_trip_through_a_file(tmp_path, official_sd, imu_batch):
    path = tmp_path / "tiny_official.pth"
    torch.save(official_sd, path)
    model = load_imagebind(path, config=TINY)
    assert not model.training
    assert_same_weights(model, official_sd)
    from_dict = load_imagebind(official_sd, config=TINY)
    with torch.no_grad():
        torch.testing.assert_close(model(imu_batch)["imu"], from_dict(imu_batch)["imu"])


def test_load_subset_of_towers(official_sd, imu_batch):
    full = load_imagebind(official_sd, config=TINY)
    imu_only = load_imagebind(official_sd, config=TINY, modalities=["imu"], dtype="fp32")
    assert set(imu_only.towers) == {"imu"}
    with torch.no_grad():
        torch.testing.assert_close(imu_only(imu_batch)["imu"], full(imu_batch)["imu"])
    # Strict for the towers built: a missing IMU key is an error even in a subset.
    broken = {k: v for k, v in official_sd.items() if k != "modality_heads.imu.3.weight"}
    with pytest.raises(CheckpointError, match="modality_heads.imu.3.weight"):
        load_imagebind(broken, config=TINY, modalities=["imu"])
    load_imagebind(broken, config=TINY, modalities=["text"])  # other towers do not care


def test_missing_unexpected_and_mismatched_keys_are_named(official_sd):
    sd = dict(official_sd)
    del sd["modality_preprocessors.text.token_embedding.weight"]
    sd["modality_trunks.vision.blocks.0.attn.in_proj_weight"] = torch.zeros(3, 3)
    sd["some.other.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_imagebind(sd, config=TINY)
    message = str(info.value)
    assert "1 missing keys: modality_preprocessors.text.token_embedding.weight" in message
    assert "1 unexpected keys: some.other.weight" in message
    assert "modality_trunks.vision.blocks.0.attn.in_proj_weight (3, 3) != expected (192, 64)" \
        in message
    with pytest.raises(CheckpointError, match="mismatched"):
        load_imagebind(official_sd)  # tiny weights into the huge architecture


def test_corrupt_and_non_state_dict_files(tmp_path, official_sd):
    good = tmp_path / "good.pth"
    torch.save(official_sd, good)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_imagebind(corrupt, config=TINY)
    other = tmp_path / "list.pth"
    torch.save([1, 2, 3], other)
    with pytest.raises(CheckpointError, match="state dict"):
        read_checkpoint(other)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_imagebind(tmp_path / "absent.pth", config=TINY)


def test_cache_path_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMBIND_CACHE", str(tmp_path / "env-cache"))
    assert checkpoint_cache_path() == tmp_path / "env-cache" / HUGE_FILENAME
    assert checkpoint_cache_path(tmp_path) == tmp_path / HUGE_FILENAME
    monkeypatch.delenv("STREAMBIND_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checkpoint_cache_path() == tmp_path / "xdg" / "streambind" / HUGE_FILENAME
    assert not huge_checkpoint_available()


def test_download_once_then_verify_cache(tmp_path, official_sd, monkeypatch):
    monkeypatch.delenv("STREAMBIND_IMAGEBIND_SHA256", raising=False)
    source = tmp_path / "served.pth"
    torch.save(official_sd, source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    assert not huge_checkpoint_available(cache)

    model = load_imagebind("huge", config=TINY, cache_dir=cache, url=source.as_uri(),
                           progress=False)
    assert_same_weights(model, official_sd)
    cached = checkpoint_cache_path(cache)
    assert huge_checkpoint_available(cache)
    assert cached.read_bytes() == source.read_bytes()
    assert (cache / (HUGE_FILENAME + ".sha256")).read_text().split() == [digest, HUGE_FILENAME]
    assert sorted(p.name for p in cache.iterdir()) == [HUGE_FILENAME, HUGE_FILENAME + ".sha256"]

    source.unlink()  # a second load must not download again
    load_imagebind("huge", config=TINY, cache_dir=cache, url=source.as_uri())

    # The cached file changes (corruption): the recorded hash catches it.
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="recorded at first download"):
        load_imagebind("huge", config=TINY, cache_dir=cache)


def test_download_with_wrong_expected_hash_leaves_nothing(tmp_path, official_sd):
    source = tmp_path / "served.pth"
    torch.save(official_sd, source)
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match="expected 0000"):
        load_imagebind("huge", config=TINY, cache_dir=cache, url=source.as_uri(),
                       expected_sha256="0" * 64, progress=False)
    assert list(cache.iterdir()) == []
    # The right hash from the environment is accepted.
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STREAMBIND_IMAGEBIND_SHA256", good.upper())
        load_imagebind("huge", config=TINY, cache_dir=cache, url=source.as_uri(),
                       progress=False)
    assert huge_checkpoint_available(cache)


def test_offline_without_cache_says_where_to_put_the_file(tmp_path):
    cache = tmp_path / "cache"
    unreachable = (tmp_path / "nowhere" / "imagebind_huge.pth").as_uri()
    with pytest.raises(CheckpointError) as info:
        load_imagebind("huge", cache_dir=cache, url=unreachable, progress=False)
    assert str(checkpoint_cache_path(cache)) in str(info.value)
    assert "STREAMBIND_CACHE" in str(info.value)
    assert not huge_checkpoint_available(cache)
    with pytest.raises(CheckpointError, match="place it at"):
        load_imagebind("huge", cache_dir=cache, download=False)


def test_hand_placed_file_gets_its_hash_recorded(tmp_path, official_sd):
    cache = tmp_path / "cache"
    cache.mkdir()
    torch.save(official_sd, cache / HUGE_FILENAME)
    load_imagebind("huge", config=TINY, cache_dir=cache, download=False)
    recorded = (cache / (HUGE_FILENAME + ".sha256")).read_text().split()[0]
    assert recorded == hashlib.sha256((cache / HUGE_FILENAME).read_bytes()).hexdigest()


def test_bad_dtype_name():
    with pytest.raises(ConfigError, match="dtype"):
        load_imagebind("tiny", dtype="fp8")


def test_download_module_fetches_once_and_rejects_a_wrong_hash(tmp_path, capsys):
    from streambind.model import download

    source = tmp_path / "source.pth"
    source.write_bytes(b"bytes standing in for the checkpoint")
    cache = tmp_path / "cache"
    args = ["--cache-dir", str(cache), "--url", source.as_uri()]
    assert download.main(args) == 0
    assert (cache / "imagebind_huge.pth").read_bytes() == source.read_bytes()
    assert (cache / "imagebind_huge.pth.sha256").is_file()
    assert download.main([*args, "--sha256", "0" * 64]) == 1
    assert "expected" in capsys.readouterr().err


def test_huge_untrained_builds_the_official_architecture_deterministically():
    from streambind.model import load_imagebind

    first = load_imagebind("huge-untrained", modalities=("imu",))
    again = load_imagebind("huge-untrained", modalities=("imu",))
    assert first.embed_dim == 1024
    torch.testing.assert_close(dict(first.state_dict()), dict(again.state_dict()))
