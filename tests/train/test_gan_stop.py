"""``train gan`` stops on divergence (keeping the last finite snapshot) and when ADA stalls."""

import re
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import viscoin.train.gan as vg
from tests.train.test_gan import TINY
from tests.train.test_gan_init import run_main
from viscoin.config import load_config
from viscoin.train.gan import AdaStalled, check_ada_stall
from viscoin.utils.checkpoint import read_metadata
from viscoin.utils.runs import read_metrics


def train_cli(tmp_path, name, capsys, *sets):
    data = ["data.resolution=16", "data.options.n_train=8", "gan.kimg=0.04"]
    args = ["train", "gan", "--config", "shapes", *(f"--set={s}" for s in TINY + data + list(sets))]
    code = run_main(
        *args, "--device", "cpu", "--quiet", "--runs-dir", str(tmp_path), "--name", name
    )
    return code, capsys.readouterr().err


def test_divergence_stops_and_keeps_the_last_finite_snapshot(tmp_path, capsys):
    code, err = train_cli(tmp_path, "nan", capsys, "gan.lr=100", "gan.snapshot_every=1")
    assert code == 2
    # the step lr=100 first overflows at depends on rounding (BLAS, threads): read it
    found = re.search(r"diverged: non-finite losses at step (\d+)", err)
    assert found, err
    bad = int(found.group(1))
    assert bad >= 2  # a snapshot (step 1 at least) was written before
    assert f"last finite snapshot (step {bad - 1}) is kept" in err
    checkpoints = tmp_path / "nan" / "checkpoints"
    for name in ("generator.safetensors", "discriminator.safetensors"):
        assert f'"step": {bad - 1}' in read_metadata(checkpoints / name)["viscoin.extra"]
        assert all(t.isfinite().all() for t in load_file(checkpoints / name).values())


def test_ada_stall_stops_when_p_sits_at_one(tmp_path, capsys):
    # ada_kimg tiny: p jumps to 0 or 1 at every adjustment; a target of 0.01 lets D "win" easily.
    ada = ["gan.ada_target=0.01", "gan.ada_kimg=0.001", "gan.ada_interval=1", "gan.lr=0.01"]
    code, err = train_cli(tmp_path, "stall", capsys, *ada, "gan.ada_stall_kimg=0.008")
    assert code == 2
    assert "ADA has held p at 1 for 0.008 kimg" in err and "more training images" in err
    records = read_metrics(tmp_path / "stall" / "metrics.jsonl")
    last = records[-1]["step"]
    # the stop is justified by the log: p = 1 and r_t > target over the last 2 steps (8 images)
    window = [r for r in records if r["step"] >= last - 2]
    assert len(window) == 3 and last < 10
    assert all(r["augment_p"] == 1.0 and r["ada_rt"] > 0.01 for r in window)
    assert read_metadata(tmp_path / "stall" / "checkpoints" / "generator.safetensors")
    # the same run without the stop trains to the end
    code, _ = train_cli(tmp_path, "nostall", capsys, *ada, "gan.ada_stall_kimg=0")
    assert code == 0
    assert read_metrics(tmp_path / "nostall" / "metrics.jsonl")[-1]["step"] == 10


def test_ada_stall_needs_p_at_one_and_r_t_above_target_throughout():
    g = load_config(None, ["gan.batch_size=4", "gan.ada_target=0.6", "gan.ada_stall_kimg=0.008"])
    pipe = SimpleNamespace(p=torch.tensor(1.0))
    state = SimpleNamespace(ada=object(), augment_pipe=pipe, step=0, ada_stall_since=None)

    def adjust(rt, p=1.0):
        state.step += 1
        pipe.p = torch.tensor(p)
        check_ada_stall(state, g.gan, {"ada_rt": torch.tensor(rt)})

    adjust(0.7)
    adjust(0.7)
    adjust(0.5)  # r_t below the target: D is not winning, the stretch starts again
    adjust(0.7)
    adjust(0.7, p=0.9)  # p below 1: ADA still has room
    adjust(0.7)
    adjust(0.7)
    with pytest.raises(AdaStalled, match="since step 6"):
        adjust(0.7)


def test_non_finite_weights_with_finite_losses_never_reach_a_snapshot(
    tmp_path, capsys, monkeypatch
):
    """A NaN that no loss shows (here w_avg, which training never reads) is caught by the weight
    check before the snapshot: the last finite one stays on disk."""
    step = vg.training_step

    def poisoned(loss, *args, **kwargs):
        values = step(loss, *args, **kwargs)
        if loss.s.step == 3:
            loss.s.G_ema.mapping.w_avg[0] = float("nan")
        return values

    monkeypatch.setattr(vg, "training_step", poisoned)
    code, err = train_cli(tmp_path, "w", capsys, "gan.snapshot_every=1", "gan.log_every=100")
    assert code == 2
    assert "diverged: non-finite weights at step 3" in err, err
    assert "last finite snapshot (step 2) is kept" in err
    generator = tmp_path / "w" / "checkpoints" / "generator.safetensors"
    assert '"step": 2' in read_metadata(generator)["viscoin.extra"]
    assert all(t.isfinite().all() for t in load_file(generator).values())
