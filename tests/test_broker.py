"""The embedded broker: CLI readiness line, clean SIGTERM stop, Kafka round trip."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streambind.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.broker


def test_cli_prints_ready_and_stops_on_sigterm():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streambind", "broker", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line == f"ready bootstrap=127.0.0.1:{port}\n"
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
        producer.send("t", b"hello").get(timeout=10)
        producer.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stdout.read() == ""  # exactly one line on stdout
    finally:
        if proc.poll() is None:
            proc.kill()


def test_python_api_round_trip_with_headers():
    with EmbeddedBroker() as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        producer.send("rt", key=b"k", value=b"v", headers=[("schema", b"x")]).get(timeout=10)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap,
                                 auto_offset_reset="earliest")
        consumer.assign([TopicPartition("rt", 0)])
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            for msgs in consumer.poll(500).values():
                got.extend(msgs)
        consumer.close()
        assert [(m.key, m.value, m.headers) for m in got] == [(b"k", b"v", [("schema", b"x")])]
        assert broker.running()
    assert not broker.running()
