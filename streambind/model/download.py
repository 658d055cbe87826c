"""Download the official ImageBind huge checkpoint into a cache directory, once.

    python -m streambind.model.download [--cache-dir DIR] [--sha256 HEX]

Used as the init step of the Kubernetes deployment (a weights volume shared by the GPU
pods); does nothing but verify when the file is already there.
"""

from __future__ import annotations

import argparse
import logging
import sys

from streambind.errors import CheckpointError
from streambind.model.cache import HUGE_URL, ensure_huge_checkpoint


def main(argv: list[str] | None = None) -> int:
    """Ensure the checkpoint is cached and verified; exit code 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m streambind.model.download")
    parser.add_argument("--cache-dir", help="directory for imagebind_huge.pth")
    parser.add_argument("--sha256", help="expected SHA-256 of the checkpoint")
    parser.add_argument("--url", default=HUGE_URL, help="where to download it from (a mirror)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = ensure_huge_checkpoint(
            args.cache_dir, url=args.url, expected_sha256=args.sha256
        )
    except CheckpointError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
