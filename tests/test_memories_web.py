"""The memories HTTP API and web page, against a store filled from the real model's vectors.

Ground truth by construction: each class's rows lie near the real (tiny preset) model's
embedding of that class's query (a text prompt, or a ``.wav`` clip), with noise well under
the distance between classes, and carry the class as their label. A query through the
server (which loads the model the rows name, as ``search`` does) must bring back rows of
its own class first; seven classes, so chance for the top row is 1/7.

The page is driven in headless Chromium (Debian's ``chromium`` and ``chromium-driver``;
``make test`` installs them when missing). ``STREAMBIND_WEB_SCREENSHOT=PATH`` also writes a
screenshot of the page with results (docs/memories-web.png is made this way).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
import wave

import numpy as np
import pytest

from streambind.memories.http import MemoriesServer, ServerConfig
from streambind.memories.preview import thumbnail_jpeg
from streambind.memories.query import QueryEmbedder, QueryItem
from streambind.memories.rows import Memory, decode_event, label_table, memory_table
from streambind.memories.search import Memories, parse_time
from streambind.memories.store import open_store, unit
from streambind.stream.ids import window_id

S = 1_000_000_000
T0 = parse_time("2026-12-01T08:00:00Z")
TEXT_CLASSES = {"glass breaking": (150, 200, 230), "a dog barking": (170, 120, 70),
                "rain on a window": (60, 80, 140), "someone cooking": (230, 140, 40)}
SOUND_CLASSES = ("beep", "hiss")
IMAGE_CLASS = "orange sunset"  # rows near the model's embedding of an uploaded picture
DEVICES = ("kitchen-1", "hall-2", "garden-3")
PER_CLASS = 6
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
MAX_UPLOAD = 1024 * 1024


def wav_bytes(kind: str, seconds: float = 2.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    if kind == "beep":
        x = 0.6 * np.sin(2 * np.pi * 880 * t) * (np.sin(2 * np.pi * 4 * t) > 0)
    else:
        x = 0.3 * np.random.default_rng(7).standard_normal(len(t))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32_000).astype("<i2").tobytes())
    return out.getvalue()


def sunset_png() -> bytes:
    from PIL import Image

    y = np.linspace(0, 1, 120)[:, None, None]
    sky = (1 - y) * np.array([250, 150, 40]) + y * np.array([90, 20, 60])  # (120, 1, 3)
    frame = np.repeat(sky, 160, axis=1).astype(np.uint8)  # (120, 160, 3)
    frame[70:90, 60:100] = (255, 220, 90)
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="PNG")
    return out.getvalue()


def picture(color: tuple[int, int, int], seed: int) -> np.ndarray:
    """A (120, 160, 3) frame: the class colour with a lighter band, so thumbnails differ."""
    rng = np.random.default_rng(seed)
    frame = np.empty((120, 160, 3), np.uint8)
    frame[:] = color
    y = int(rng.integers(20, 90))
    frame[y:y + 18] = np.minimum(255, np.asarray(color) + 70)
    return frame


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A LanceDB store with labelled rows near the real model's class embeddings."""
    from streambind.config import ModelSettings
    from streambind.serve.embedder import ModelRunner

    runner = ModelRunner(ModelSettings(source="tiny"))
    model = runner.model_name
    embedder = QueryEmbedder(runner)
    root = tmp_path_factory.mktemp("memweb")
    wavs = {}
    for kind in SOUND_CLASSES:
        wavs[kind] = root / f"{kind}.wav"
        wavs[kind].write_bytes(wav_bytes(kind))
    centers = {c: embedder.embed_item(QueryItem("text", c)) for c in TEXT_CLASSES}
    centers.update({c: embedder.embed_item(QueryItem("audio", str(wavs[c])))
                    for c in SOUND_CLASSES})
    centers[IMAGE_CLASS] = embedder.embed_item(QueryItem("image", sunset_png()))
    names = list(centers)
    stacked = np.stack([centers[c] for c in names])  # (C, D)
    dists = np.linalg.norm(stacked[:, None] - stacked[None], axis=-1)
    d_min = float(dists[~np.eye(len(names), dtype=bool)].min())
    assert d_min > 0.2, "the model's class embeddings must differ for this ground truth"
    rng = np.random.default_rng(0)
    mems, events, truth = [], [], {}
    for ci, name in enumerate(names):
        for j in range(PER_CLASS):
            i = ci * PER_CLASS + j
            noise = rng.standard_normal(stacked.shape[1]).astype(np.float32)
            vector = unit(centers[name] + 0.25 * d_min * noise / np.linalg.norm(noise))
            device, start = DEVICES[i % len(DEVICES)], T0 + i * 60 * S  # apart: no merging
            modality = "audio" if name in SOUND_CLASSES else "vision"
            thumb = (None if modality == "audio" else thumbnail_jpeg(sunset_png())
                     if name == IMAGE_CLASS else thumbnail_jpeg(picture(TEXT_CLASSES[name], i)))
            wid = window_id(device, modality, start, start + 2 * S, model)
            mems.append(Memory(wid, device, modality, start, start + 2 * S, model, vector,
                               f"sensors.{modality}", 0, i * 10, i * 10 + 9, thumb))
            events.append(decode_event(json.dumps({
                "device_id": device, "modality": modality, "window_start_ns": start,
                "window_end_ns": start + 2 * S, "model": model, "label_set": "home",
                "labels": [{"label": name, "score": 0.9}]}).encode())[1])
            truth[wid] = name
    uri = str(root / "memories")
    store = open_store(uri)
    store.upsert(model, memory_table(mems, T0))
    store.upsert_labels(model, label_table(events))
    return {"uri": uri, "model": model, "wavs": wavs, "truth": truth, "mems": mems,
            "root": root}


@pytest.fixture(scope="module")
def server(world):
    # Memories picks the model from the rows' model name: the model the store was written with.
    srv = MemoriesServer(Memories(world["uri"]),
                         ServerConfig(port=0, max_upload_bytes=MAX_UPLOAD)).start()
    yield srv
    srv.stop()


def call(server, path, data=None, headers=None, method=None):
    """(status, JSON body) of one request; error bodies are JSON too."""
    req = urllib.request.Request(server.url + path, data=data, headers=headers or {},
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        assert b"Traceback" not in body
        return exc.code, json.loads(body)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream'
                     "\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def labels_of(results):
    return [r["labels"][0] if r["labels"] else None for r in results]


def test_text_search_over_http_finds_its_class_with_fields_and_thumbnails(server, world):
    status, body = call(server, "/api/search?" + urllib.parse.urlencode(
        {"text": "rain on a window", "k": 8}))
    assert status == 200 and body["model"] == world["model"]
    results = body["results"]
    assert len(results) == 8
    assert labels_of(results)[:PER_CLASS] == ["rain on a window"] * PER_CLASS
    top = results[0]
    assert world["truth"][top["window_id"]] == "rain on a window"
    for field in ("window_id", "device_id", "modality", "window_start_ns", "window_end_ns",
                  "score", "labels", "start", "end", "moment_start_ns", "source"):
        assert field in top
    assert top["modality"] == "vision" and top["thumbnail"].startswith("data:image/jpeg;base64,")
    assert top["start"].startswith("2026-12-01T") and -1.0 <= top["score"] <= 1.0
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_upload_wav_arithmetic_filters_and_like(server, world):
    body, headers = multipart({"k": "4"}, {"file": ("q.wav", wav_bytes("hiss"))})
    status, out = call(server, "/api/search", body, headers)
    assert status == 200 and labels_of(out["results"]) == ["hiss"] * 4
    body, headers = multipart({"k": "4"}, {"image": ("q.png", sunset_png())})
    status, out = call(server, "/api/search", body, headers)
    assert status == 200 and labels_of(out["results"]) == [IMAGE_CLASS] * 4

    # Arithmetic: the same items through the Python API give the same windows and scores.
    query = {"text": ["glass breaking", "a dog barking"], "minus": ["rain on a window::0.5"],
             "k": 6}
    status, out = call(server, "/api/search", json.dumps(query).encode(),
                       {"Content-Type": "application/json"})
    direct = Memories(world["uri"]).search(
        [QueryItem("text", "glass breaking"), QueryItem("text", "a dog barking"),
         QueryItem("text", "rain on a window", -0.5)], k=6)
    assert status == 200
    assert [r["window_id"] for r in out["results"]] == [m.best.window_id for m in direct]
    assert set(labels_of(out["results"])) <= {"glass breaking", "a dog barking"}

    since, until = T0 + 10 * 60 * S, T0 + 30 * 60 * S
    status, out = call(server, "/api/search?" + urllib.parse.urlencode(
        {"text": "someone cooking", "device": "kitchen-1", "modality": "vision",
         "since": "2026-12-01T08:10:00Z", "until": str(until), "k": 50}))
    assert status == 200 and out["results"]
    for r in out["results"]:
        assert r["device_id"] == "kitchen-1" and r["modality"] == "vision"
        assert r["window_end_ns"] > since and r["window_start_ns"] < until
    expected = {m.window_id for m in world["mems"] if m.device_id == "kitchen-1"
                and m.modality == "vision" and m.window_end_ns > since
                and m.window_start_ns < until}
    assert {r["window_id"] for r in out["results"]} == expected  # the filter never starves

    example = next(w for w, c in world["truth"].items() if c == "beep")
    status, out = call(server, "/api/search?" + urllib.parse.urlencode(
        {"like": example, "k": 3}))
    assert status == 200 and example not in {r["window_id"] for r in out["results"]}
    assert labels_of(out["results"]) == ["beep"] * 3
    status, row = call(server, f"/api/windows/{example}")
    assert status == 200 and row["labels"] == ["beep"] and "vector" not in row


def test_bad_requests_are_typed_json_errors(server, world):
    cases = [
        ("/api/search", None, 400, "bad_request"),  # no query item
        ("/api/search?text=x&k=abc", None, 400, "bad_request"),
        ("/api/search?text=x&k=0", None, 400, "bad_request"),
        ("/api/search?text=x&colour=red", None, 400, "bad_request"),
        ("/api/search?text=x&since=yesterday", None, 400, "bad_request"),
        ("/api/search?like=" + "0" * 64, None, 404, "not_found"),
        ("/api/windows/nope", None, 404, "not_found"),
        ("/api/nothing", None, 404, "not_found"),
        ("/../pyproject.toml", None, 404, "not_found"),
        ("/api/search", (b"{not json", {"Content-Type": "application/json"}), 400,
         "bad_request"),
        ("/api/search", (b"text=x", {"Content-Type": "text/csv"}), 415,
         "unsupported_media_type"),
        ("/api/search", multipart({}, {"audio": ("x.wav", b"RIFF....WAVEjunk")}), 400,
         "bad_request"),
        ("/api/search", multipart({}, {"image": ("x.png", b"\x89PNG broken")}), 400,
         "bad_request"),
    ]
    for path, payload, want, code in cases:
        data, headers = payload if payload else (None, {})
        status, body = call(server, path, data, headers)
        assert (status, body["error"]["code"]) == (want, code), (path, body)
        assert body["error"]["message"]
    # An upload over the limit is refused from its Content-Length, before it is read.
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("POST", "/api/search")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(MAX_UPLOAD + 1))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["error"]["code"] == "payload_too_large"
    conn.close()
    status, _ = call(server, "/api/info")  # still serving
    assert status == 200


def test_cli_serves_the_store(world):
    proc = subprocess.Popen(
        [sys.executable, "-m", "streambind", "memories", "serve", "--store", world["uri"],
         "--port", "0", "--lazy-model"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        url = json.loads(line)["url"]
        with urllib.request.urlopen(url + "/api/info", timeout=30) as resp:
            info = json.loads(resp.read())
        assert info["rows"] == len(world["mems"]) and info["model"] == world["model"]
        with urllib.request.urlopen(url + "/", timeout=30) as resp:
            assert b"streambind memories" in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI (make test installs chromium-driver)")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1180,860", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def test_page_search_upload_and_more_like_this_in_headless_chromium(server, world, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(tmp_path)
    wait = WebDriverWait(driver, 90)
    done = [0]

    def search(click) -> list:
        done[0] += 1
        click()
        wait.until(lambda d: d.execute_script("return document.body.dataset.searches")
                   == str(done[0]))
        return driver.find_elements(By.CSS_SELECTOR, "#results article.result")

    def card_labels(cards) -> list[str]:
        return [c.find_element(By.CSS_SELECTOR, ".label").text for c in cards]

    try:
        driver.get(server.url + "/")
        wait.until(lambda d: "windows" in d.find_element(By.ID, "info").text)
        driver.find_element(By.ID, "text").send_keys("glass breaking")
        cards = search(driver.find_element(By.ID, "go").click)
        assert len(cards) >= PER_CLASS
        assert card_labels(cards)[:PER_CLASS] == ["glass breaking"] * PER_CLASS
        assert all(world["truth"][c.get_attribute("data-window-id")] == "glass breaking"
                   for c in cards[:PER_CLASS])
        img = cards[0].find_element(By.CSS_SELECTOR, "img.thumb")
        assert driver.execute_script("return arguments[0].naturalWidth", img) > 0
        shot = os.environ.get("STREAMBIND_WEB_SCREENSHOT")
        if shot:
            driver.save_screenshot(shot)

        driver.find_element(By.ID, "text").clear()
        driver.find_element(By.ID, "file").send_keys(str(world["wavs"]["beep"]))
        cards = search(driver.find_element(By.ID, "go").click)
        assert card_labels(cards)[:PER_CLASS] == ["beep"] * PER_CLASS
        first = cards[0].get_attribute("data-window-id")

        cards = search(cards[0].find_element(By.CSS_SELECTOR, "button.more").click)
        ids = [c.get_attribute("data-window-id") for c in cards]
        assert first not in ids and card_labels(cards)[:PER_CLASS - 1] == ["beep"] * (PER_CLASS - 1)

        bad = tmp_path / "bad.wav"
        bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
        driver.find_element(By.ID, "like").clear()
        driver.find_element(By.ID, "file").send_keys(str(bad))
        cards = search(driver.find_element(By.ID, "go").click)
        error = driver.find_element(By.ID, "error")
        assert error.is_displayed() and error.text.startswith("400 bad_request")
        assert not cards
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)
