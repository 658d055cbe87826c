"""Configuration: YAML file, environment overrides, validation, secrets never shown."""

import pytest

from streambind.config import AppConfig, BatchSettings, load_config
from streambind.errors import ConfigError


def test_file_then_environment_then_explicit_overrides(tmp_path):
    path = tmp_path / "streambind.yaml"
    path.write_text(
        "kafka: {bootstrap_servers: 'k:9092', group_id: g1}\n"
        "model: {source: tiny, modalities: [audio, text]}\n"
        "embedder: {num_replicas: 2, batching: {audio: {max_batch_size: 8}}}\n"
    )
    environ = {
        "STREAMBIND_KAFKA__GROUP_ID": "g2",
        "STREAMBIND_EMBEDDER__NUM_GPUS": "0.25",
        "STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD": "12345",  # stays a string
        "UNRELATED": "x",
    }
    config = load_config(path, overrides={"ingest": {"num_replicas": 3}}, environ=environ)
    assert config.kafka == {
        "bootstrap_servers": "k:9092",
        "group_id": "g2",
        "sasl_plain_password": "12345",
    }
    assert config.embedder.num_gpus == 0.25 and config.embedder.num_replicas == 2
    assert config.embedder.batching == {"audio": BatchSettings(max_batch_size=8)}
    assert config.model.modalities == ("audio", "text")
    assert config.ingest.num_replicas == 3
    assert AppConfig.from_dict(config.to_dict()) == config


def test_repr_masks_credentials():
    config = load_config(environ={"STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(config) and "***" in repr(config)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"kafak": {}}, "unknown config sections"),
        ({"kafka": {"bootstrap": "x"}}, "unknown kafka settings"),
        ({"model": {"sauce": "huge"}}, "unknown settings in model"),
        ({"embedder": {"batching": {"audio": {"size": 3}}}}, "embedder.batching.audio"),
    ],
)
def test_unknown_keys_are_rejected(doc, message):
    with pytest.raises(ConfigError, match=message):
        AppConfig.from_dict(doc)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, environ={})


def test_stream_config_combines_kafka_and_stream_sections():
    config = AppConfig.from_dict(
        {
            "kafka": {"bootstrap_servers": "k:9092", "group_id": "g", "sasl_plain_password": "p"},
            "stream": {"modalities": ["audio"], "idle_timeout_s": 2.5},
        }
    )
    stream = config.stream_config(model="imagebind_tiny_untrained")
    assert (stream.bootstrap, stream.group_id, stream.modalities) == ("k:9092", "g", ("audio",))
    assert stream.idle_timeout_s == 2.5 and stream.model == "imagebind_tiny_untrained"
    assert stream.consumer_kwargs()["sasl_plain_password"] == "p"
    unknown = AppConfig.from_dict({"kafka": {"bootstrap_servers": "k"}, "stream": {"x": 1}})
    with pytest.raises(ConfigError, match="stream/kafka"):
        unknown.stream_config(model="m")


def test_public_dict_has_no_secrets_and_replicas_read_them_from_their_environment(tmp_path):
    config = AppConfig.from_dict({"kafka": {"bootstrap_servers": "k:9092",
                                            "security_protocol": "SASL_SSL",
                                            "sasl_plain_username": "svc",
                                            "sasl_plain_password": "hunter2"}})
    public = config.public_dict()
    assert "hunter2" not in repr(public) and public["kafka"]["sasl_plain_username"] == "svc"
    replica = AppConfig.from_dict(public)
    with pytest.raises(ConfigError, match="STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD"):
        replica.with_secrets(environ={})  # fails at start, never with an empty password
    from_env = replica.with_secrets(
        environ={"STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD": "s3cret: yes"})
    assert from_env.kafka["sasl_plain_password"] == "s3cret: yes"  # opaque, not YAML
    stream = from_env.stream_config(model="m")
    assert stream.consumer_kwargs()["sasl_plain_password"] == "s3cret: yes"

    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\n")
    mounted = AppConfig.from_dict(
        {**public, "kafka": {**public["kafka"], "sasl_plain_password_file": str(secret_file)}})
    assert mounted.public_dict()["kafka"]["sasl_plain_password_file"] == str(secret_file)
    resolved = mounted.with_secrets(environ={})
    assert resolved.kafka["sasl_plain_password"] == "from-file"
    assert "sasl_plain_password_file" not in resolved.stream_config(model="m").consumer_kwargs()
    env_wins = mounted.with_secrets(environ={"STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD": "env"})
    assert env_wins.kafka["sasl_plain_password"] == "env"
    missing = AppConfig.from_dict(
        {"kafka": {"bootstrap_servers": "k", "sasl_plain_password_file": str(tmp_path / "no")}})
    with pytest.raises(ConfigError, match="cannot read kafka.sasl_plain_password_file"):
        missing.with_secrets(environ={})
    plaintext = AppConfig.from_dict({"kafka": {"bootstrap_servers": "k"}})
    assert plaintext.with_secrets(environ={}) == plaintext  # nothing needed, nothing added
