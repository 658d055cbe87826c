"""Memories store: both backends (LanceDB embedded, Qdrant local mode) against exact numpy."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from streambind.memories.lance import LanceOptions, LanceStore
from streambind.memories.moments import merge_moments
from streambind.memories.query import QueryError, QueryItem, combine, parse_weighted
from streambind.memories.rows import (
    FusionState,
    Memory,
    decode_embeddings,
    decode_event,
    label_table,
    memory_table,
)
from streambind.memories.search import Memories, parse_time
from streambind.memories.store import Filter, Hit, open_store, table_name
from streambind.stream.ids import window_id

D = 32
S = 1_000_000_000
MODEL = "test-model"


def memories(n: int, seed: int = 0, devices: int = 10) -> list[Memory]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, D)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    out = []
    for i in range(n):
        dev, start = f"dev{i % devices}", (i // devices) * S
        out.append(Memory(window_id(dev, "audio", start, start + 2 * S, MODEL), dev, "audio",
                          start, start + 2 * S, MODEL, vecs[i], "sensors.audio", 0, i, i))
    return out


def exact_top(mems: list[Memory], q: np.ndarray, k: int, keep=lambda m: True) -> list[str]:
    pool = [m for m in mems if keep(m)]
    scores = np.array([float(m.vector @ q) for m in pool])
    return [pool[i].window_id for i in np.argsort(-scores)[:k]]


@pytest.fixture(params=["lance", "qdrant"])
def store(request, tmp_path):
    if request.param == "lance":
        # A small index threshold so that the indexed path is exercised at test size.
        return LanceStore(str(tmp_path / "mem"), LanceOptions(min_index_rows=500,
                                                              exact_max_rows=150))
    return open_store("qdrant+local://:memory:", exact_max_rows=150)


def test_open_store_picks_backend_by_uri(tmp_path):
    assert type(open_store(str(tmp_path / "a"))).__name__ == "LanceStore"
    assert type(open_store("qdrant+local://:memory:")).__name__ == "QdrantStore"
    assert table_name("a/b") != table_name("a_b")  # same slug, different models


def test_upsert_is_idempotent_and_replaces(store):
    mems = memories(200)
    store.upsert(MODEL, memory_table(mems, 1))
    store.upsert(MODEL, memory_table(mems[:50], 2))  # a replay of the first 50
    assert store.count(MODEL) == 200
    moved = [Memory(**{**m.__dict__, "vector": -m.vector}) for m in mems[:5]]
    store.upsert(MODEL, memory_table(moved, 3))
    rows = store.get(MODEL, [mems[0].window_id])
    assert np.allclose(rows.column("vector")[0].as_py(), -mems[0].vector, atol=1e-6)
    assert store.count(MODEL) == 200
    assert store.models() == [MODEL]


def test_search_matches_exact_top_k_with_and_without_filters(store):
    mems = memories(2000)
    for start in range(0, 2000, 500):
        store.upsert(MODEL, memory_table(mems[start:start + 500], 1))
    store.optimize(MODEL)  # builds the vector index on the Lance backend
    rng = np.random.default_rng(7)
    recall = []
    for _ in range(10):
        q = rng.standard_normal(D).astype(np.float32)
        q /= np.linalg.norm(q)
        hits, _plan = store.search(MODEL, q, 10)
        recall.append(len({h.window_id for h in hits} & set(exact_top(mems, q, 10))) / 10)
        # Selective filter: one device, a time range -> exact, the true top-k.
        where = Filter(devices=("dev3",), since_ns=20 * S, until_ns=120 * S)
        hits, plan = store.search(MODEL, q, 10, where)
        keep = lambda m: m.device_id == "dev3" and m.window_end_ns > 20 * S \
            and m.window_start_ns < 120 * S  # noqa: E731
        assert plan.exact
        assert [h.window_id for h in hits] == exact_top(mems, q, 10, keep)
        assert all(abs(h.score - float(next(m for m in mems if m.window_id == h.window_id)
                                       .vector @ q)) < 1e-4 for h in hits)
    assert np.mean(recall) >= 0.9


def test_delete_by_device_and_age(store):
    mems = memories(100)
    store.upsert(MODEL, memory_table(mems, 1))
    assert store.delete(MODEL, device_id="dev1") == 10
    assert store.delete(MODEL, ended_before_ns=5 * S) == 3 * 9  # starts 0, 1, 2 s; 9 devices
    assert store.count(MODEL) == 100 - 10 - 27
    hits, _ = store.search(MODEL, mems[0].vector, 100)
    assert all(h.device_id != "dev1" and h.window_end_ns >= 5 * S for h in hits)


def test_labels_join_and_filter(store):
    mems = memories(20)
    store.upsert(MODEL, memory_table(mems, 1))
    rows = []
    for m in mems[:5]:
        _model, row = decode_event(json.dumps({
            "device_id": m.device_id, "modality": "audio", "window_start_ns": m.window_start_ns,
            "window_end_ns": m.window_end_ns, "model": MODEL, "label_set": "home",
            "labels": [{"label": "glass", "score": 0.9}]}).encode())
        rows.append(row)
    store.upsert_labels(MODEL, label_table(rows))
    store.upsert_labels(MODEL, label_table(rows))  # replay
    assert store.windows_with_label(MODEL, "glass") == sorted(m.window_id for m in mems[:5])
    assert store.labels_of(MODEL, [mems[0].window_id, mems[9].window_id]) == {
        mems[0].window_id: ["glass"]}
    found = Memories(store, MODEL).search(np.asarray(mems[12].vector), label="glass", k=3,
                                          merge=False)
    assert {m.best.window_id for m in found} <= {m.window_id for m in mems[:5]}
    assert len(found) == 3 and all(m.labels == ("glass",) for m in found)


def test_more_like_this_without_a_model(store):
    mems = memories(300)
    store.upsert(MODEL, memory_table(mems, 1))
    api = Memories(store)  # the store's only model
    found = api.search([QueryItem("like", mems[42].window_id)], k=5, merge=False)
    top = exact_top(mems, mems[42].vector, 6)
    assert [m.best.window_id for m in found] == top[1:]  # the example itself is left out
    with pytest.raises(QueryError):
        api.search([QueryItem("like", "nope")])


def test_embeddings_record_round_trip_and_bad_records():
    from streambind.memories.rows import RecordError
    from streambind.stream.chunks import SensorChunk
    from streambind.stream.sinks import EmbeddedWindow, encode_embeddings
    from streambind.stream.windows import ClosedWindow, WindowKey

    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, :80] = 255
    chunks = tuple(SensorChunk("vision", "cam", t * S // 4, t * S // 4 + S // 4, t, frame,
                               None, None, 2, 100 + t) for t in range(8))
    window = ClosedWindow(WindowKey("cam", "vision", 0, 2 * S), 2, chunks, 1.0, (), False,
                          "emitted", "watermark")
    vec = np.arange(D, dtype=np.float32)
    value = encode_embeddings([EmbeddedWindow(window, vec, MODEL)])
    (mem,) = decode_embeddings(value)
    assert mem.window_id == window_id("cam", "vision", 0, 2 * S, MODEL)
    assert (mem.source_topic, mem.source_partition, mem.first_offset, mem.last_offset) == (
        "sensors.vision", 2, 100, 107)
    assert mem.thumbnail[:2] == b"\xff\xd8" and len(mem.thumbnail) < 8000
    assert np.allclose(mem.vector, vec / np.linalg.norm(vec))
    with pytest.raises(RecordError) as err:
        decode_embeddings(b"not arrow")
    assert err.value.reason == "bad_schema"
    with pytest.raises(RecordError):
        decode_event(b"{}")


def test_window_id_is_deterministic_and_sensitive():
    base = ("d", "audio", 0, 2 * S, "m")
    assert window_id(*base) == window_id(*base)
    assert len(window_id(*base)) == 64
    for i, other in enumerate(("e", "imu", 1, 3 * S, "n")):
        changed = list(base)
        changed[i] = other
        assert window_id(*changed) != window_id(*base)


def test_fusion_state_sums_overlapping_modalities():
    state = FusionState()
    a = Memory("a", "d", "audio", 0, 2 * S, MODEL, np.eye(D, dtype=np.float32)[0])
    v = Memory("v", "d", "vision", S, 3 * S, MODEL, np.eye(D, dtype=np.float32)[1])
    assert state.add(a) is None
    fused = state.add(v)
    assert fused.modality == "fused" and fused.window_id == window_id("d", "fused", S, 3 * S,
                                                                       MODEL)
    assert np.allclose(fused.vector[:2], [2 ** -0.5, 2 ** -0.5], atol=1e-6)


def test_moments_merge_adjacent_hits_of_one_device():
    def hit(dev, start, score, modality="audio"):
        return Hit(f"{dev}{start}{modality}", dev, modality, start * S, (start + 2) * S, score)

    hits = [hit("a", 0, 0.5), hit("a", 1, 0.9), hit("a", 2, 0.7, "vision"), hit("a", 10, 0.8),
            hit("b", 1, 0.6)]
    moments = merge_moments(hits)
    assert [(m.best.device_id, m.score, m.moment_start_ns // S, m.moment_end_ns // S, m.windows)
            for m in moments] == [("a", 0.9, 0, 4, 3), ("a", 0.8, 10, 12, 1), ("b", 0.6, 1, 3, 1)]
    assert moments[0].modalities == ("audio", "vision")
    assert set(moments[0].to_json()) >= {"window_id", "device_id", "modality", "window_start_ns",
                                         "window_end_ns", "score", "moment_start_ns",
                                         "moment_end_ns"}


def test_query_arithmetic_and_parsing():
    x, y = np.eye(3, dtype=np.float32)[0] * 3, np.eye(3, dtype=np.float32)[1]
    assert np.allclose(combine([x, y], [1, 1]), [2 ** -0.5, 2 ** -0.5, 0])
    assert np.allclose(combine([x, y], [1, -0.5]), np.array([1, -0.5, 0]) / np.sqrt(1.25))
    with pytest.raises(QueryError):
        combine([x, x], [1, -1])
    assert parse_weighted("waves::0.5") == ("waves", 0.5)
    assert parse_weighted("a::b") == ("a::b", 1.0)
    assert parse_time("2026-12-01T08:00:00Z") == 1796112000 * S
    assert parse_time("2026-12-01T09:00:00+01:00") == 1796112000 * S
    assert parse_time("123") == 123
    assert pa.types.is_fixed_size_list(memory_table(memories(3), 0).schema.field("vector").type)


def test_search_export_parquet_jsonl_and_directory(tmp_path, capsys):
    import pyarrow.parquet as pq

    from streambind.cli import main

    store = LanceStore(str(tmp_path / "mem"))
    mems = memories(40)
    mems[1] = Memory(**{**mems[1].__dict__, "thumbnail": b"\xff\xd8fakejpeg"})
    store.upsert(MODEL, memory_table(mems, 1))
    base = ["search", "--store", str(tmp_path / "mem"), "--like", mems[0].window_id,
            "--windows", "-k", "5", "--json"]
    assert main([*base, "--export", str(tmp_path / "out.parquet")]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == len(printed) == 5
    assert table.column("window_id").to_pylist() == [p["window_id"] for p in printed]
    assert table.column("rank").to_pylist() == [1, 2, 3, 4, 5]
    assert table.column("source_topic").to_pylist()[0] == "sensors.audio"
    assert main([*base, "--export", str(tmp_path / "out.jsonl")]) == 0
    capsys.readouterr()
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == printed
    # A directory: both files, and each moment's preview as a JPEG.
    assert main(["search", "--store", str(tmp_path / "mem"), "--like", mems[0].window_id,
                 "--windows", "-k", "40", "--export", str(tmp_path / "dir")]) == 0
    assert (tmp_path / "dir" / "results.parquet").is_file()
    jpgs = list((tmp_path / "dir").glob(f"*-{mems[1].window_id}.jpg"))
    assert len(jpgs) == 1 and jpgs[0].read_bytes() == b"\xff\xd8fakejpeg"


def test_racing_appends_are_deduplicated_by_maintenance(tmp_path):
    # Two writers appending the same new windows (a rebalance overlap) bypass the upsert's
    # check; search shows each window once and maintenance keeps the newest copy only.
    store = LanceStore(str(tmp_path / "mem"), LanceOptions(min_index_rows=10_000))
    mems = memories(300)
    store.upsert(MODEL, memory_table(mems, 1))
    table = store._table(table_name(MODEL))
    table.add(memory_table(mems[:40], 2))  # the racing writer's copy, written later
    assert store.count(MODEL) == 340
    hits, _ = store.search(MODEL, mems[3].vector, 5)
    assert len({h.window_id for h in hits}) == 5 and hits[0].window_id == mems[3].window_id
    store.optimize(MODEL)
    assert store.count(MODEL) == 300
    kept = store.get(MODEL, [mems[0].window_id, mems[100].window_id])
    stamps = dict(zip(kept.column("window_id").to_pylist(),
                      kept.column("stored_at_ns").to_pylist(), strict=True))
    assert stamps == {mems[0].window_id: 2, mems[100].window_id: 1}
    store.upsert(MODEL, memory_table(mems[:10], 3))  # a replay still replaces, never adds
    assert store.count(MODEL) == 300
    import time

    # A later race on new windows: both copies are recent, which is what the next pass
    # (it looks at recently stored rows only) compares.
    late = [Memory(**{**m.__dict__, "window_id": f"late-{i}"}) for i, m in enumerate(mems[:10])]
    store.upsert(MODEL, memory_table(late, time.time_ns()))
    table.add(memory_table(late, time.time_ns()))
    assert store.count(MODEL) == 320
    store.optimize(MODEL)
    assert store.count(MODEL) == 310
