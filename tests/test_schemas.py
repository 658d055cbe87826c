"""The wire schemas: files are the one source of truth, the package copy matches them."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import jsonschema
import pyarrow as pa
import pytest

from streambind.stream import schemas
from streambind.stream.chunks import MODALITIES
from streambind.stream.ids import event_id
from streambind.stream.records import REASONS, encode_columns, read_ipc

ROOT = Path(__file__).resolve().parents[1]


def test_package_copy_is_identical_to_schemas_dir():
    src = sorted(p.name for p in (ROOT / "schemas").glob("*.json"))
    copy = ROOT / "streambind" / "stream" / "schema_files"
    assert src == sorted(p.name for p in copy.glob("*.json"))
    match, mismatch, errors = filecmp.cmpfiles(ROOT / "schemas", copy, src, shallow=False)
    assert not mismatch and not errors


@pytest.mark.parametrize("modality", MODALITIES)
def test_sensor_schema_has_the_contract_fields(modality):
    schema = schemas.sensor_schema(modality)
    assert schema.field("device_id").type == pa.string()
    assert schema.field("ts_ns").type == pa.int64()
    assert schema.field("seq").type == pa.uint64()
    assert schemas.schema_header(modality) == f"streambind.{modality}.v1"
    doc = json.loads((ROOT / "schemas" / f"{modality}.v1.json").read_text())
    assert [f["name"] for f in doc["fields"]] == schema.names
    assert doc["limits"]["max_payload_bytes"] > 0


def test_modality_fields():
    assert schemas.sensor_schema("audio").field("channels").type == pa.int16()
    assert schemas.sensor_schema("audio").field("sample_rate").type == pa.int32()
    assert schemas.sensor_schema("imu").names[3:] == ["acc_x", "acc_y", "acc_z", "gyro_x",
                                                      "gyro_y", "gyro_z"]
    for m in ("vision", "depth", "thermal"):
        assert schemas.sensor_schema(m).field("data").type == pa.binary()
    assert schemas.limits("vision")["encodings"] == ["jpeg", "png", "rgb8"]
    assert schemas.limits("depth")["encodings"] == ["u16_mm", "f32_m"]
    assert schemas.limits("thermal")["encodings"] == ["u8", "u16", "f32_c"]


def test_embeddings_schema():
    schema = schemas.embeddings_schema(1024)
    assert schema.names == ["device_id", "modality", "window_start_ns", "window_end_ns",
                            "embedding", "model", "window_id", "source_topic",
                            "source_partition", "first_offset", "last_offset", "thumbnail"]
    assert schema.field("embedding").type == pa.list_(pa.float32(), 1024)


def test_event_schema_is_valid_and_checks_events():
    schema = schemas.event_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    ev = {"event_id": event_id("d", "audio", 0, 2, "home", 3, "m"), "device_id": "d",
          "modality": "audio", "window_start_ns": 0, "window_end_ns": 2, "label_set": "home",
          "label_set_version": 3, "labels": [{"label": "speech", "score": 0.8}], "model": "m",
          "emitted_at_ns": 5}
    jsonschema.validate(ev, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**ev, "modality": "Smell!"}, schema)
    # A bound sensor's name is well-formed; the model's own names narrow the schema.
    jsonschema.validate({**ev, "modality": "smell"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**ev, "modality": "smell"}, schemas.event_json_schema(["audio"]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in ev.items() if k != "event_id"}, schema)


def test_event_id_is_deterministic_and_sensitive():
    a = event_id("d", "audio", 0, 2, "home", 3, "m")
    assert a == event_id("d", "audio", 0, 2, "home", 3, "m")
    assert len(a) == 64
    assert a != event_id("d", "audio", 0, 2, "home", 4, "m")
    assert a != event_id("d", "audio", 1, 2, "home", 3, "m")
    assert event_id("a:b", "c", 0, 1, "", 0, "m") != event_id("a", "b:c", 0, 1, "", 0, "m")


def test_codec_round_trip():
    value = encode_columns("audio", {"device_id": ["x"], "ts_ns": [1], "seq": [2],
                                     "sample_rate": [16000], "channels": [1],
                                     "encoding": ["pcm_s16le"], "data": [b"\0\0"]})
    table = read_ipc(value, 10)
    assert table.schema.equals(schemas.sensor_schema("audio"))
    assert table.to_pylist()[0]["seq"] == 2
    assert set(REASONS) >= {"bad_schema", "bad_shape", "non_finite", "too_large",
                            "future_timestamp", "decode_error"}
