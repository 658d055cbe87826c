"""Smoke test of `streambind bench model` (a command, not a timed test)."""

import argparse

from streambind.bench import model as bench


def test_bench_model_prints_one_row_per_tower(capsys):
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    args = parser.parse_args(["--batch-size", "2", "--iters", "1", "--warmup", "0",
                              "--modalities", "imu", "text"])
    assert bench.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "preset=tiny device=cpu dtype=fp32 batch=2" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == ["text", "imu"]  # checkpoint order
    assert rows["imu"][1] == "251" and rows["text"][1] == "77"  # tokens per item
    for row in rows.values():
        assert float(row[2]) > 0 and float(row[3]) > 0
        assert float(row[4].rstrip("x")) > 0
        assert float(row[5]) < 1e-4  # both attention paths give the same embeddings


def test_bench_model_rejects_bad_arguments(capsys):
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    assert bench.run(parser.parse_args(["--batch-size", "0"])) == 2
    assert "--batch-size" in capsys.readouterr().err
