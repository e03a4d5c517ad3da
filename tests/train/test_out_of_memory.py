"""A GPU running out of memory in a training loop ends with one ``error:`` line saying what to
lower (exit code 2), and what was on disk stays as it was."""

import pytest
import torch

import viscoin.train.gan as vg
import viscoin.train.viscoin as vt
from tests.train.test_gan_stop import train_cli
from tests.train.test_step_options import models, train_viscoin  # noqa: F401 (a fixture)
from viscoin.errors import UserError
from viscoin.utils.checkpoint import read_metadata
from viscoin.utils.device import out_of_memory_as_user_error

TORCH_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.6 GiB of "
    "which 1.1 GiB is free.\nIncluding non-PyTorch memory, this process has 22.4 GiB in use."
)


def test_out_of_memory_becomes_one_line_with_the_advice():
    with pytest.raises(UserError) as caught, out_of_memory_as_user_error("lower the batch"):
        raise torch.cuda.OutOfMemoryError(TORCH_MESSAGE)
    message = str(caught.value)
    assert "\n" not in message and message.endswith("): lower the batch")
    assert message.startswith("GPU out of memory (CUDA out of memory. Tried to allocate 2.00 GiB")
    assert len(message) < 220  # torch's first line, shortened
    # other errors pass through
    with pytest.raises(RuntimeError, match="other"), out_of_memory_as_user_error("lower"):
        raise RuntimeError("other")


def oom_at(calls: int, function):
    """``function``, raising CUDA's out-of-memory error at its ``calls``-th call."""
    seen = []

    def wrapped(*args, **kwargs):
        seen.append(1)
        if len(seen) == calls:
            raise torch.cuda.OutOfMemoryError(TORCH_MESSAGE)
        return function(*args, **kwargs)

    return wrapped


def test_train_gan_out_of_memory_says_what_to_lower_and_keeps_the_snapshot(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(vg, "training_step", oom_at(3, vg.training_step))
    code, err = train_cli(tmp_path, "oom", capsys, "gan.snapshot_every=1")
    assert code == 2
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert line.startswith("error: GPU out of memory (CUDA out of memory. Tried to allocate")
    assert "start again with a lower gan.batch_size (now" in line
    assert "cuda_graphs" not in line  # none on the CPU
    assert "Traceback" not in err
    # the snapshot of step 2 (before the failing third step) is on disk, whole
    checkpoints = tmp_path / "oom" / "checkpoints"
    assert '"step": 2' in read_metadata(checkpoints / "generator.safetensors")["viscoin.extra"]


def test_train_viscoin_out_of_memory_says_what_to_lower(models, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(vt.ViscoinTrainer, "train_step", oom_at(2, vt.ViscoinTrainer.train_step))
    proc = train_viscoin(models, tmp_path, "viscoin.checkpoint_every=1")
    assert proc.returncode == 2, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: GPU out of memory (CUDA out of memory.")
    assert "--resume with --set viscoin.amp=bf16" in line  # fp32 on the CPU
    assert "lower viscoin.real_batch and viscoin.fake_batch (now 4 and 4)" in line
    assert "Traceback" not in proc.stderr
    saved = read_metadata(tmp_path / "v" / "checkpoints" / "viscoin.safetensors")
    assert '"step": 1' in saved["viscoin.extra"]
