"""`streambind run` validates its flags and files before it starts Ray."""

import pytest

from streambind.cli import main
from streambind.errors import ConfigError


def test_run_without_bootstrap_fails_fast(capsys, monkeypatch):
    monkeypatch.delenv("STREAMBIND_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    assert main(["run", "--model", "tiny"]) == 2
    assert "no Kafka bootstrap servers" in capsys.readouterr().err


def test_run_with_a_bad_label_file_fails_fast(tmp_path, capsys):
    labels = tmp_path / "labels.yaml"
    labels.write_text("name: x\nversion: 1\nlabels: []\n")
    assert main(["run", "--bootstrap", "127.0.0.1:1", "--labels", str(labels)]) == 2
    assert "non-empty" in capsys.readouterr().err


def test_flags_override_the_config_file(tmp_path):
    import argparse

    from streambind.serve.cli import config_from_args, configure_parser

    config_file = tmp_path / "streambind.yaml"
    config_file.write_text("kafka: {bootstrap_servers: 'a:1', group_id: from-file}\n")
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--config", str(config_file), "--group", "from-flag",
                              "--model", "tiny"])
    config = config_from_args(args)
    assert config.kafka == {"bootstrap_servers": "a:1", "group_id": "from-flag"}
    assert config.model.source == "tiny"
    with pytest.raises(ConfigError):
        config_from_args(parser.parse_args(["--config", str(tmp_path / "missing.yaml")]))
