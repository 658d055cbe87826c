"""The memories store side by side: indexed search vs exact, ingest vs raw append, freshness.

One run, on a fresh LanceDB store (the embedded default) in a temporary directory:

1. **Ingest.** ``--rows`` synthetic memory rows (D = ``--dim``, real window ids, ``--devices``
   devices x 5 modalities over ``--span-s`` of event time) in batches of ``--batch-rows``.
   Batch by batch, interleaved so both see the same machine load, the same batch goes to
   (a) a raw LanceDB ``table.add`` into a bare table and (b) the store's ``upsert`` (the
   write path of ``remember``), while the store's maintenance (compaction, index build and
   refresh, as ``remember`` schedules it) runs on its own thread every
   ``--optimize-every-s``. Rows/s of each and their ratio.
2. **Freshness.** While ingesting, a reader with its own connection (as a ``search``
   process would have) looks for probe rows by their vector (plain top-1 search, no
   filter) from the moment the writer hands their batch to the store until they come back;
   p50/p99 of that delay, and the reader's query latency while the table is growing.
3. **Queries.** After a final maintenance pass: ``--queries`` queries (half "text-like",
   offset from every stored modality as text embeddings are, half "more like this" near a
   stored row) under five filters: none, one device, one modality, a one-hour time range,
   and one device within six hours. Ground truth is exact top-k by numpy over the same
   vectors and the same filter; recall@k of the store's own plan (it may choose an exact
   scan for a selective filter) and of the indexed path forced (same probe sizing), and
   p50/p99 latency. The store's exact scan is checked against numpy on a few queries
   (``exact_check``).

Vectors are clustered as embeddings are: a unit sum of an activity direction, a device
(scene) direction, a modality direction, a continuous 24-dimensional part and noise.
``--uniform`` draws them uniformly on the sphere instead: no structure at all, the worst
case for any index and unlike any embedding space (reported beside, not as the target).
Latencies
include Python and Arrow conversion (the ``Store.search`` call as ``search`` makes it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from streambind.bench.memories_data import (
    MODEL,
    BenchData,
    batch_table,
    exact_top,
    filter_cases,
    make_data,
    recall_at_k,
)

logger = logging.getLogger(__name__)

WARMUP_QUERIES = 5  # per filter, not measured
TARGETS = {"recall_at_k": 0.95, "p99_ms": 50.0, "ingest_ratio": 0.5, "freshness_p99_s": 10.0}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streambind bench memories``."""
    from streambind.memories.lance import LanceOptions
    from streambind.memories.remember import RememberConfig

    defaults = LanceOptions()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024, help="embedding width (huge: 1024)")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--span-s", type=float, default=86_400.0, help="event time covered")
    parser.add_argument("--batch-rows", type=int, default=RememberConfig.batch_rows)
    parser.add_argument("--queries", type=int, default=200, help="queries per filter")
    parser.add_argument("--exact-queries", type=int, default=10,
                        help="queries run through the store's exact scan as a check")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--optimize-every-s", type=float, default=RememberConfig.optimize_every_s)
    parser.add_argument("--probe-every", type=int, default=1, help="a freshness probe every "
                        "this many batches")
    parser.add_argument("--nprobes", type=int, default=defaults.nprobes)
    parser.add_argument("--partition-rows", type=int, default=defaults.target_partition_size,
                        help="IVF target partition size")
    parser.add_argument("--refine-factor", type=int, default=defaults.refine_factor)
    parser.add_argument("--exact-max-rows", type=int, default=defaults.exact_max_rows)
    parser.add_argument("--min-index-rows", type=int, default=defaults.min_index_rows)
    parser.add_argument("--index-type", default=defaults.index_type)
    parser.add_argument("--dir", default=None, help="store directory (default: a temporary "
                        "one, removed afterwards)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--uniform", action="store_true", help="vectors uniform on the sphere "
                        "(no structure: the worst case for any index) instead of clustered")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


# ---------------------------------------------------------------------------- figures


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50 / p99 / max of durations in seconds, as milliseconds."""
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    arr = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2),
            "max_ms": round(float(arr.max()), 2)}


# ----------------------------------------------------------------------------- phases


class _FreshnessReader(threading.Thread):
    """Polls a separate store connection for probe rows until each is found."""

    def __init__(self, store: object, timeout_s: float = 30.0) -> None:
        super().__init__(name="bench-freshness", daemon=True)
        self.store = store
        self.timeout_s = timeout_s
        self.probes: queue.Queue = queue.Queue()
        self.delays_s: list[float] = []
        self.missed = 0
        self.latencies_s: list[float] = []
        self._done = threading.Event()

    def run(self) -> None:
        pending: list[tuple[str, np.ndarray, float]] = []
        while not (self._done.is_set() and not pending and self.probes.empty()):
            while not self.probes.empty():
                pending.append(self.probes.get())
            still = []
            for wid, vector, written_s in pending:
                started = time.perf_counter()
                try:
                    hits, _ = self.store.search(MODEL, vector, 1)
                except Exception as exc:  # noqa: BLE001 (table not created yet, conflicts)
                    logger.debug("freshness probe search failed: %s", exc)
                    hits = []
                now = time.perf_counter()
                self.latencies_s.append(now - started)
                if hits and hits[0].window_id == wid:
                    self.delays_s.append(now - written_s)
                elif now - written_s > self.timeout_s:
                    self.missed += 1
                else:
                    still.append((wid, vector, written_s))
            pending = still
            time.sleep(0.02)

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=self.timeout_s + 30)


def ingest(data: BenchData, directory: str, options: object, batch_rows: int,
           optimize_every_s: float, probe_every: int) -> tuple[object, dict]:
    """Phase 1 and 2: interleaved raw append vs store upsert, freshness while ingesting."""
    import lancedb

    from streambind.memories.lance import LanceStore
    from streambind.memories.remember import Maintenance, RememberConfig
    from streambind.memories.store import row_schema

    store = LanceStore(os.path.join(directory, "store"), options)
    reader = _FreshnessReader(LanceStore(os.path.join(directory, "store"), options))
    raw_db = lancedb.connect(os.path.join(directory, "raw"))
    raw = raw_db.create_table("raw", schema=row_schema(data.vectors.shape[1]))
    maintenance = Maintenance(store, RememberConfig(bootstrap="",
                                                    optimize_every_s=optimize_every_s))
    raw_s = store_s = 0.0
    n = len(data.window_ids)
    reader.start()
    maintenance.start()
    started = time.perf_counter()
    try:
        for b, lo in enumerate(range(0, n, batch_rows)):
            hi = min(n, lo + batch_rows)
            table = batch_table(data, lo, hi, time.time_ns())
            t0 = time.perf_counter()
            raw.add(table)
            t1 = time.perf_counter()
            if b % probe_every == probe_every - 1:
                probe = lo + (hi - lo) // 2
                reader.probes.put((data.window_ids[probe], data.vectors[probe], t1))
            store.upsert(MODEL, table)
            store_s += time.perf_counter() - t1
            raw_s += t1 - t0
    finally:
        wall_s = time.perf_counter() - started
        maintenance.stop()
        reader.finish()
    t0 = time.perf_counter()
    store.optimize(MODEL)  # the index covers everything before the query phase
    final_optimize_s = time.perf_counter() - t0
    return store, {
        "rows": n, "batch_rows": batch_rows,
        "raw_append_rows_per_s": round(n / raw_s, 1),
        "store_upsert_rows_per_s": round(n / store_s, 1),
        "ratio": round(raw_s / store_s, 3),
        "wall_s": round(wall_s, 1), "maintenance_passes": maintenance.runs,
        "final_optimize_s": round(final_optimize_s, 1),
        "stored_rows": store.count(MODEL),
        "freshness": {"probes": len(reader.delays_s) + reader.missed,
                      "missed": reader.missed,
                      "p50_s": _pct(reader.delays_s, 50), "p99_s": _pct(reader.delays_s, 99),
                      "max_s": round(max(reader.delays_s), 3) if reader.delays_s else None},
        "latency_while_ingesting": percentiles_ms(reader.latencies_s),
    }


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def query_phase(store: object, data: BenchData, k: int, span_s: float, seed: int,
                exact_queries: int) -> dict:
    """Phase 3: recall@k and latency per filter, against numpy's exact top-k."""
    rng = np.random.default_rng(seed + 1)
    cases = filter_cases(data, rng, len(data.queries), span_s)
    scores = np.empty((len(data.queries), len(data.vectors)), dtype=np.float32)  # (Q, N)
    for lo in range(0, len(data.vectors), 262_144):  # one pass over the rows for all queries
        scores[:, lo:lo + 262_144] = data.queries @ data.vectors[lo:lo + 262_144].T
    out: dict = {}
    for name, pairs in cases.items():
        for query, (where, _) in zip(data.queries[:WARMUP_QUERIES], pairs, strict=False):
            store.search(MODEL, query, k, where)  # a served process is warm: caches loaded
        served, forced, lat, plans, matching = [], [], [], {}, []
        for qi, (query, (where, mask)) in enumerate(zip(data.queries, pairs, strict=True)):
            truth = exact_top(data, query, mask, k, scores[qi])
            t0 = time.perf_counter()
            hits, plan = store.search(MODEL, query, k, where)
            lat.append(time.perf_counter() - t0)
            served.append(recall_at_k([h.window_id for h in hits], truth))
            plans[plan.reason] = plans.get(plan.reason, 0) + 1
            matching.append(int(mask.sum()))
            if name != "none":
                hits, _ = store.search(MODEL, query, k, where, exact=False)
                forced.append(recall_at_k([h.window_id for h in hits], truth))
        out[name] = {"queries": len(pairs), "matching_rows_median": int(np.median(matching)),
                     "recall_at_k": round(float(np.mean(served)), 4),
                     "recall_text": round(float(np.mean([r for r, q in zip(
                         served, data.query_kinds, strict=True) if q == "text"])), 4),
                     "recall_like": round(float(np.mean([r for r, q in zip(
                         served, data.query_kinds, strict=True) if q == "like"])), 4),
                     "indexed_forced_recall_at_k": round(float(np.mean(forced)), 4)
                     if forced else None,
                     "plans": plans, **percentiles_ms(lat)}
    check, lat = [], []
    for qi, query in enumerate(data.queries[:exact_queries]):
        t0 = time.perf_counter()
        hits, _ = store.search(MODEL, query, k, exact=True)
        lat.append(time.perf_counter() - t0)
        check.append(recall_at_k([h.window_id for h in hits], exact_top(
            data, query, np.ones(len(data.end_ns), bool), k, scores[qi])))
    out["exact_check"] = {"queries": len(check), "recall_vs_numpy": round(float(np.mean(check)),
                                                                           4) if check else None,
                          **percentiles_ms(lat)}
    return out


# -------------------------------------------------------------------------------- run


def run_bench(args: argparse.Namespace) -> dict:
    """Everything above, returned as one JSON-ready report."""
    from streambind.memories.lance import LanceOptions

    os.environ.setdefault("RUST_LOG", "error")  # lance's per-query deprecation warnings
    load_start = [round(x, 1) for x in os.getloadavg()]  # other processes on the machine
    options = LanceOptions(nprobes=args.nprobes, target_partition_size=args.partition_rows,
                           refine_factor=args.refine_factor,
                           exact_max_rows=args.exact_max_rows,
                           min_index_rows=args.min_index_rows, index_type=args.index_type)
    t0 = time.perf_counter()
    data = make_data(args.rows, args.dim, args.devices, args.span_s, args.queries, args.seed,
                     uniform=args.uniform)
    generate_s = time.perf_counter() - t0
    directory = args.dir or tempfile.mkdtemp(prefix="streambind-bench-memories-")
    try:
        store, ingest_report = ingest(data, directory, options, args.batch_rows,
                                      args.optimize_every_s, args.probe_every)
        queries = query_phase(store, data, args.k, args.span_s, args.seed, args.exact_queries)
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    filtered = [c for c in ("device", "modality", "time_1h", "device_6h")]
    worst_recall = min(queries[c]["recall_at_k"] for c in ("none", *filtered))
    worst_p99 = max(queries[c]["p99_ms"] for c in ("none", *filtered))
    fresh_p99 = ingest_report["freshness"]["p99_s"]
    met = {"recall_at_k": worst_recall >= TARGETS["recall_at_k"],
           "p99_ms": worst_p99 <= TARGETS["p99_ms"],
           "ingest_ratio": ingest_report["ratio"] >= TARGETS["ingest_ratio"],
           "freshness_p99_s": fresh_p99 is not None and fresh_p99 <= TARGETS["freshness_p99_s"]
           and ingest_report["freshness"]["missed"] == 0}
    return {
        "machine": {"cpus": os.cpu_count(), "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                    "load_average_start": load_start,
                    "load_average_end": [round(x, 1) for x in os.getloadavg()]},
        "config": {"rows": args.rows, "dim": args.dim, "devices": args.devices,
                   "batch_rows": args.batch_rows, "k": args.k, "queries": args.queries,
                   "index_type": args.index_type, "nprobes": args.nprobes,
                   "partition_rows": args.partition_rows,
                   "refine_factor": args.refine_factor, "exact_max_rows": args.exact_max_rows,
                   "optimize_every_s": args.optimize_every_s, "uniform": args.uniform,
                   "generate_s": round(generate_s, 1)},
        "ingest": ingest_report, "queries": queries,
        "summary": {"worst_recall_at_k": worst_recall, "worst_p99_ms": worst_p99,
                    "ingest_ratio": ingest_report["ratio"], "freshness_p99_s": fresh_p99},
        "targets": TARGETS, "met": met,
    }


def format_report(report: dict) -> str:
    """The report as a text table."""
    ing, q = report["ingest"], report["queries"]
    c = report["config"]
    lines = [f"memories bench: {c['rows']} rows, D={c['dim']}, {c['devices']} devices, "
             f"batches of {c['batch_rows']}, {c['index_type']} (partitions of "
             f"{c['partition_rows']}) nprobes={c['nprobes']} "
             f"refine={c['refine_factor']}, exact below {c['exact_max_rows']} rows, "
             f"{report['machine']['cpus']} CPUs, {report['machine']['date']}, load average "
             f"{report['machine']['load_average_start'][0]} -> "
             f"{report['machine']['load_average_end'][0]}",
             f"ingest: store upsert {ing['store_upsert_rows_per_s']:.0f} rows/s vs raw append "
             f"{ing['raw_append_rows_per_s']:.0f} rows/s = {ing['ratio']:.2f}x "
             f"({ing['maintenance_passes']} maintenance passes during, final "
             f"{ing['final_optimize_s']} s)",
             f"freshness (write -> found by search, separate reader): p50 "
             f"{ing['freshness']['p50_s']} s, p99 {ing['freshness']['p99_s']} s, "
             f"{ing['freshness']['missed']} of {ing['freshness']['probes']} missed; reader "
             f"latency while ingesting p50 {ing['latency_while_ingesting']['p50_ms']} ms, "
             f"p99 {ing['latency_while_ingesting']['p99_ms']} ms",
             f"{'filter':<10} {'rows':>7} {'recall@k':>8} {'(text':>6} {'like)':>6} "
             f"{'forced-ANN':>10} {'p50 ms':>7} {'p99 ms':>7}  plans"]
    for name in ("none", "device", "modality", "time_1h", "device_6h"):
        r = q[name]
        forced = "-" if r["indexed_forced_recall_at_k"] is None else \
            f"{r['indexed_forced_recall_at_k']:.3f}"
        lines.append(f"{name:<10} {r['matching_rows_median']:>7} {r['recall_at_k']:>8.3f} "
                     f"{r['recall_text']:>6.3f} {r['recall_like']:>6.3f} {forced:>10} "
                     f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}  "
                     + ", ".join(f"{k}: {v}" for k, v in sorted(r["plans"].items())))
    ec = q["exact_check"]
    lines.append(f"store exact scan vs numpy: recall {ec['recall_vs_numpy']} over "
                 f"{ec['queries']} queries, p50 {ec['p50_ms']} ms")
    lines.append("targets: " + ", ".join(
        f"{k} {'met' if v else 'NOT met'}" for k, v in report["met"].items()))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the bench and print the report."""
    report = run_bench(args)
    sys.stdout.write((json.dumps(report) if args.json else format_report(report)) + "\n")
    return 0
