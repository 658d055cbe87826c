"""streambind bench memories at a few thousand rows: the report's structure, and that its
recall is measured against exact search (a crippled index shows up as lost recall)."""

from __future__ import annotations

import argparse
import json

import numpy as np

from streambind.bench import memories as bench
from streambind.memories.lance import LanceOptions, LanceStore

SMALL = dict(rows=3000, dim=64, devices=20, span_s=3 * 3600.0, queries=24, seed=3)


def _args(tmp_path, **over) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    args = parser.parse_args([])
    for key, value in {**SMALL, "batch_rows": 500, "min_index_rows": 1000,
                       "exact_max_rows": 200, "partition_rows": 100, "optimize_every_s": 0.5,
                       "probe_every": 1, "exact_queries": 6, "dir": str(tmp_path / "bench"),
                       **over}.items():
        setattr(args, key, value)
    return args


def test_recall_helpers_against_brute_force() -> None:
    assert bench.recall_at_k(["a", "b", "c"], ["c", "d", "a"]) == 2 / 3
    assert bench.recall_at_k([], []) == 1.0 and bench.recall_at_k(["a"], []) == 0.0
    data = bench.make_data(500, 16, 5, 3600.0, 4, seed=1)
    mask = data.devices == 2
    q = data.queries[0]
    loop = sorted((i for i in range(500) if mask[i]), key=lambda i: -float(data.vectors[i] @ q))
    assert bench.exact_top(data, q, mask, 10) == [data.window_ids[i] for i in loop[:10]]
    assert np.allclose(np.linalg.norm(data.vectors, axis=1), 1.0, atol=1e-5)
    assert len(set(data.window_ids)) == 500


def test_bench_report_structure_and_exact_ground_truth(tmp_path, capsys) -> None:
    args = _args(tmp_path, uniform=True)  # no structure: an index's misses are visible
    report = bench.run_bench(args)
    json.dumps(report)  # JSON-ready
    ing = report["ingest"]
    assert ing["rows"] == ing["stored_rows"] == SMALL["rows"]
    assert ing["raw_append_rows_per_s"] > 0 and ing["store_upsert_rows_per_s"] > 0
    assert ing["ratio"] == round(ing["ratio"], 3) > 0
    fresh = ing["freshness"]
    assert fresh["probes"] == SMALL["rows"] // 500 and fresh["missed"] == 0
    assert 0 <= fresh["p50_s"] <= fresh["p99_s"] < 30
    q = report["queries"]
    assert set(q) == {"none", "device", "modality", "time_1h", "device_6h", "exact_check"}
    for name in ("none", "device", "modality", "time_1h", "device_6h"):
        row = q[name]
        assert row["queries"] == SMALL["queries"]
        assert 0.0 <= row["recall_at_k"] <= 1.0 and row["p50_ms"] <= row["p99_ms"]
        assert sum(row["plans"].values()) == SMALL["queries"]
    assert q["none"]["plans"] == {"indexed": SMALL["queries"]}  # the index was really used
    assert q["device"]["plans"] == {"selective filter": SMALL["queries"]}  # tiny: exact...
    assert q["device"]["recall_at_k"] == 1.0  # ...and so the true top-k comes back
    assert "indexed with prefilter" in q["modality"]["plans"]
    assert q["exact_check"]["recall_vs_numpy"] == 1.0  # the store's flat scan = numpy's
    assert set(report["met"]) == set(bench.TARGETS)
    text = bench.format_report(report)
    assert "recall@k" in text and "freshness" in text

    # The same store read through a crippled index: recall must drop, so it is measured.
    data = bench.make_data(args.rows, args.dim, args.devices, args.span_s, args.queries,
                           args.seed, uniform=True)
    crippled = LanceStore(str(tmp_path / "bench" / "store"),
                          LanceOptions(nprobes=1, refine_factor=1, exact_max_rows=0))
    worse = bench.query_phase(crippled, data, 10, args.span_s, args.seed, exact_queries=2)
    assert worse["none"]["recall_at_k"] < q["none"]["recall_at_k"]
    assert worse["none"]["recall_at_k"] < 0.5
    assert worse["exact_check"]["recall_vs_numpy"] == 1.0


def test_cli_entry_prints_json(tmp_path, capsys) -> None:
    from streambind.cli import main

    assert main(["bench", "memories", "--rows", "1200", "--dim", "32", "--devices", "10",
                 "--queries", "6", "--exact-queries", "2", "--min-index-rows", "500",
                 "--batch-rows", "400", "--optimize-every-s", "0.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["config"]["rows"] == 1200 and report["ingest"]["stored_rows"] == 1200
