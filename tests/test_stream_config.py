"""StreamConfig, the idle clock and the stand-in embedders (no broker needed)."""

from __future__ import annotations

import pytest
import torch

from streambind.errors import ConfigError
from streambind.stream.config import StreamConfig
from streambind.stream.embed import Embedder, NoopEmbedder, StandInEmbedder
from streambind.stream.partition import IdleClock


def test_config_never_shows_the_password_and_passes_security_through():
    cfg = StreamConfig(security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                       sasl_plain_username="u", sasl_plain_password="s3cret",
                       ssl_cafile="ca.pem")
    assert "s3cret" not in repr(cfg)
    kwargs = cfg.consumer_kwargs()
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["enable_auto_commit"] is False
    assert cfg.producer_kwargs()["acks"] == "all"


def test_window_specs_topics_and_validation():
    cfg = StreamConfig(hop_ms={"audio": 500}, allowed_lateness_s=2.0,
                       topics={"imu": "plant.imu"})
    spec = cfg.window_spec("audio")
    assert (spec.size_ns, spec.hop_ns, spec.allowed_lateness_ns) == (2 * 10**9, 5 * 10**8,
                                                                     2 * 10**9)
    assert cfg.window_spec("imu").hop_ns == 25 * 10**8  # default: half of 5 s
    assert cfg.topic("imu") == "plant.imu" and cfg.topic("audio") == "sensors.audio"
    with pytest.raises(ConfigError):
        StreamConfig(modalities=("smell",))
    with pytest.raises(ConfigError):
        StreamConfig(hop_ms={"audio": 3000})  # hop longer than the window
    with pytest.raises(ConfigError):
        StreamConfig(max_buffered_windows=0)


def test_idle_clock_stands_still_while_frozen():
    now = [100.0]
    clock = IdleClock(lambda: now[0])
    assert clock() == 100.0
    clock.freeze()
    now[0] = 130.0
    assert clock() == 100.0
    clock.thaw()
    assert clock() == 100.0
    now[0] = 131.0
    assert clock() == 101.0


def test_stand_in_embedder_is_deterministic_unit_and_input_sensitive():
    emb = StandInEmbedder(dim=12)
    assert isinstance(emb, Embedder)
    x = torch.randn(3, 1, 8, 8)
    a, b = emb.embed("depth", x), emb.embed("depth", x.clone())
    assert a.shape == (3, 12) and torch.equal(a, b)
    assert torch.allclose(a.norm(dim=1), torch.ones(3))
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, emb.embed("thermal", x))
    assert NoopEmbedder(dim=4).embed("imu", torch.zeros(5, 6, 2000)).shape == (5, 4)
