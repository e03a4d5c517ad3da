"""Writes that fail or are cut short, run names, the run lock, damaged metrics.jsonl."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from viscoin.errors import UserError
from viscoin.utils import io as vio
from viscoin.utils.checkpoint import load_checkpoint, save_checkpoint, save_state
from viscoin.utils.lock import RunLocked, lock_run
from viscoin.utils.runs import MetricsLogger, new_run, read_metrics


def _disk_full_after_half(monkeypatch):
    """The writer puts half the bytes down, then the device is full."""
    real = vio.write_bytes

    def full(path, data):
        real(path, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(vio, "write_bytes", full)


def test_disk_full_is_one_user_error_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {"w": torch.ones(3)}, "toy", {"v": 1})
    state = tmp_path / "s.state.pt"
    save_state(state, {"step": 1})
    _disk_full_after_half(monkeypatch)
    with pytest.raises(UserError, match=r"cannot write .*m\.safetensors: no space left"):
        save_checkpoint(path, {"w": torch.zeros(3)}, "toy", {"v": 2})
    with pytest.raises(UserError, match=r"s\.state\.pt: no space left"):
        save_state(state, {"step": 2})
    assert torch.equal(load_checkpoint(path, "toy")[0]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "s.state.pt"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        vio.atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        vio.atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600


def test_a_new_or_resumed_run_removes_stale_temporaries(tmp_path):
    run = new_run(tmp_path, "r", prefix="x")
    stale = [
        run.checkpoints / ".viscoin.safetensors.a1b2c3d4.tmp",
        run.path / ".config.yaml.zz_9yy8x.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half")
    keep = run.checkpoints / "notes.tmp"  # not one of ours
    keep.write_text("mine")
    new_run(tmp_path, "r", prefix="x", resume=True)
    assert not any(p.exists() for p in stale) and keep.exists()


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "/abs", "a\\b", " x"])
def test_run_names_with_paths_are_refused(tmp_path, name):
    with pytest.raises(UserError, match="is not a run name"):
        new_run(tmp_path / "runs", name, prefix="x")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


def test_run_name_with_a_path_through_the_cli(tmp_path, cli):
    proc = cli("train", "classifier", "--runs-dir", str(tmp_path / "runs"), "--name", "../../x",
               "--device", "cpu", "--quiet")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --name '../../x' is not a run name")
    assert len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


HOLDER = textwrap.dedent(
    """
    import sys
    from viscoin.utils.lock import lock_run
    lock_run(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes stdin
    """
)


def _hold_lock(folder):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_run_locked_by_another_process_is_refused_then_free_once_it_died(tmp_path, cli):
    from viscoin.config import load_config
    from viscoin.utils.lock import release_run

    run = new_run(tmp_path, "r", prefix="x")
    load_config("shapes", [f"run.runs_dir={tmp_path}", "run.name=r"]).save(run.config)

    release_run(run.path)  # this process lets go: the other one takes it
    holder = _hold_lock(run.path)
    try:
        with pytest.raises(RunLocked, match=rf"in use: pid {holder.pid} on host "):
            lock_run(run.path)
        proc = cli("train", "classifier", "--runs-dir", str(tmp_path), "--name", "r",
                   "--resume", "--device", "cpu", "--quiet")  # fmt: skip
        assert proc.returncode == 2
        assert proc.stderr.startswith(
            f"error: run directory {run.path} is in use: pid {holder.pid}"
        )
        assert len(proc.stderr.splitlines()) == 1
    finally:
        holder.kill()  # dies holding it: the lock file stays, naming a dead pid
        holder.wait()
    assert (run.path / ".lock").read_text().find(str(holder.pid)) >= 0
    assert lock_run(run.path) == run.path / ".lock"  # stale: taken over


def test_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger(path)
    for step in (1, 2, 3):
        logger.log(step, {"loss": 1.0})
    with open(path, "ab") as fh:
        fh.write(b'{"step": 4, "lo')
    logger.truncate_after(2)
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert "line 4 is an incomplete record" in capsys.readouterr().err


@pytest.mark.parametrize("garbage", [b"not json", b"\xff\xfe", b"[1, 2]", b'{"step": "3"}'])
def test_garbage_inside_metrics_is_refused_naming_the_line(tmp_path, garbage):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n' + garbage + b'\n{"step": 3}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl line 2 is not a metrics record"):
        MetricsLogger(path).truncate_after(3)
    assert path.read_bytes().startswith(b'{"step": 1}\n' + garbage)  # left for the user to see
