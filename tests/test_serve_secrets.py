"""Credentials never travel as Ray Serve deployment arguments: Ray keeps those in its control
store (and shows them on its dashboard); replicas read secrets from their environment."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.serve")

from ray import cloudpickle  # noqa: E402

from streambind.config import AppConfig  # noqa: E402
from streambind.serve import app as serve_app  # noqa: E402

PASSWORD = "pa55-w0rd-never-bound"


def config() -> AppConfig:
    return AppConfig.from_dict({
        "kafka": {"bootstrap_servers": "k:9093", "security_protocol": "SASL_SSL",
                  "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "svc",
                  "sasl_plain_password": PASSWORD},
        "labels": {"topic": "streambind.labels"},
    })


def bound_args(application) -> tuple:  # noqa: ANN001
    deployment = application._bound_deployment
    return deployment.init_args, deployment.init_kwargs


@pytest.mark.parametrize("builder", [serve_app.build_ingest_app, serve_app.build_embedder_app])
def test_no_password_in_what_the_builders_bind(builder):
    application = builder({"config_dict": config().to_dict()})
    args, kwargs = bound_args(application)
    assert PASSWORD not in repr(args) + repr(kwargs)
    # Everything Serve would serialize for the deployment (arguments, options, user config).
    assert PASSWORD.encode() not in cloudpickle.dumps(application)


def test_the_ingest_replica_gets_everything_else(tmp_path):
    args, _ = bound_args(serve_app.build_ingest_app({"config_dict": config().to_dict()}))
    bound = AppConfig.from_dict(args[0])
    assert bound.kafka["sasl_plain_username"] == "svc"
    assert "sasl_plain_password" not in bound.kafka
    # What the replica does at set-up: its own environment supplies the secret.
    resolved = bound.with_secrets(environ={"STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD": PASSWORD})
    assert resolved.stream_config(model="m").security_kwargs()["sasl_plain_password"] == PASSWORD


def test_a_builder_reading_the_config_file_with_the_secret_in_its_environment(
    tmp_path, monkeypatch
):
    # The Serve config file path (deploy/serve_config.yaml): the builder loads the file and
    # its own environment, which holds the Kubernetes Secret; none of it may be bound.
    path = tmp_path / "streambind.yaml"
    path.write_text("kafka: {bootstrap_servers: 'k:9093', security_protocol: SASL_SSL}\n")
    monkeypatch.setenv("STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD", PASSWORD)
    application = serve_app.build_ingest_app({"config": str(path)})
    assert PASSWORD.encode() not in cloudpickle.dumps(application)
    args, _ = bound_args(application)
    assert AppConfig.from_dict(args[0]).with_secrets().kafka["sasl_plain_password"] == PASSWORD


def test_deploy_binds_no_password(monkeypatch):
    calls = []
    monkeypatch.setattr(serve_app.serve, "start", lambda **kwargs: None)
    monkeypatch.setattr(serve_app.serve, "run", lambda application, **kw: calls.append(application))
    serve_app.deploy(config())
    assert len(calls) == 2
    for application in calls:
        assert PASSWORD.encode() not in cloudpickle.dumps(application)
