import json

import pytest

from viscoin.errors import UserError
from viscoin.utils.runs import MetricsLogger, new_run, open_run, read_metrics


def test_logger_writes_one_json_object_per_step(tmp_path):
    logger = MetricsLogger(tmp_path / "metrics.jsonl")
    logger.log(1, {"loss": 0.5, "acc": 1.0})
    logger.log(2, {"loss": 0.25}, split="test")
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["step"] == 1 and first["split"] == "train" and first["loss"] == 0.5
    assert json.loads(lines[1])["split"] == "test"


def test_torn_last_line_is_skipped_and_truncate_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger(path)
    for step in range(1, 6):
        logger.log(step, {"loss": 1.0 / step})
    with open(path, "a") as fh:
        fh.write('{"step": 6, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]
    logger.truncate_after(3)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_disabled_logger_writes_nothing(tmp_path):
    MetricsLogger(tmp_path / "m.jsonl", enabled=False).log(1, {"x": 1})
    assert not (tmp_path / "m.jsonl").exists()


def test_run_directories(tmp_path):
    run = new_run(tmp_path, "exp", prefix="viscoin")
    assert run.checkpoints.is_dir() and run.figures.is_dir()
    run.metrics.write_text("{}\n")
    with pytest.raises(UserError, match="already exists. Pass --resume"):
        new_run(tmp_path, "exp", prefix="viscoin")
    assert new_run(tmp_path, "exp", prefix="viscoin", resume=True).path == run.path
    with pytest.raises(UserError, match="cannot resume"):
        new_run(tmp_path, "other", prefix="viscoin", resume=True)
    with pytest.raises(UserError, match="run directory not found"):
        open_run(tmp_path / "missing")
