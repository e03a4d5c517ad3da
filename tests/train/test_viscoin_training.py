"""VisCoIN training on tiny parts: the loss goes down, resume is exact, save → load, export, DDP."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from tests.train.ddp import free_port, torchrun_environment
from tests.train.viscoin_fixtures import TinyImages, make_parts, tiny_config
from viscoin.models.viscoin import export_viscoin, load_viscoin
from viscoin.train.distributed import DistInfo
from viscoin.train.viscoin import ViscoinTrainer, learning_rate
from viscoin.utils.runs import new_run, read_metrics

CPU = DistInfo(0, 1, 0, torch.device("cpu"))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return make_parts(tmp_path_factory.mktemp("parts"))


@pytest.fixture(scope="module")
def parts64(tmp_path_factory):
    """64 px parts: f's last stage is 2×2, so Φ's 3×3 maps vary in space and dropout acts."""
    return make_parts(tmp_path_factory.mktemp("parts64"), res=64)


def _trainer(cfg, name, parts, resume=False, dist=CPU, n=32):
    run = new_run(cfg.run.runs_dir, name, prefix="v", resume=resume)
    res = cfg.data.resolution
    train, test = TinyImages(n, 0, res), TinyImages(8, 1, res)
    return ViscoinTrainer(cfg, run, *parts, train, test, dist, resume=resume)


def _train_losses(trainer):
    return [
        (r["step"], r["total"], r["mse"])
        for r in read_metrics(trainer.run.metrics)
        if r["split"] == "train"
    ]


def _assert_same_weights(a, b, exact=True, atol=1e-5):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if exact:
            assert torch.equal(x, y), name
        else:
            torch.testing.assert_close(
                x, y, atol=atol, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}"
            )


def test_loss_goes_down(tmp_path, parts):
    cfg = tiny_config(tmp_path, iterations=40, dropout=0.0)
    trainer = _trainer(cfg, "down", parts, n=8)
    trainer.fit(progress=False)
    totals = [r["total"] for r in read_metrics(trainer.run.metrics) if r["split"] == "train"]
    assert len(totals) == 40
    assert sum(totals[-5:]) / 5 < 0.8 * sum(totals[:5]) / 5
    tests = [r for r in read_metrics(trainer.run.metrics) if r["split"] == "test"]
    assert {"acc_f", "acc_g", "fidelity", "mse", "l1"} <= set(tests[-1])


def test_real_images_only(tmp_path, parts):
    """fake_batch = 0 trains on the real images alone (no sample from G)."""
    cfg = tiny_config(tmp_path, iterations=3, fake_batch=0)
    trainer = _trainer(cfg, "real-only", parts, n=8)
    trainer.fit(progress=False)
    assert trainer._fake_batch(0).shape == (0, 3, 32, 32)
    totals = [r["total"] for r in read_metrics(trainer.run.metrics) if r["split"] == "train"]
    assert len(totals) == 3 and all(t == t for t in totals)


def test_classifier_term_off_skips_f_on_reconstructions(tmp_path, parts):
    """With γ = 0 (a float) f(x̃) is not computed; losses and gradients are those of the full
    computation with γ = 0 as a tensor (the compiled path, which always computes it)."""
    cfg = tiny_config(tmp_path, iterations=1, dropout=0.0)
    trainer = _trainer(cfg, "skip", parts, n=8)
    images = torch.stack([TinyImages(4, 3)[i][0] for i in range(4)])
    calls = []
    forward_features = trainer.classifier.forward_features

    def counting(x):
        calls.append(x is images)
        return forward_features(x)

    trainer.classifier.forward_features = counting
    results = []
    for gamma in (0.0, torch.tensor(0.0)):
        trainer.core.zero_grad(set_to_none=True)
        terms = trainer.compute.losses(images, True, gamma)
        terms["total"].backward()
        grads = [p.grad.clone() for p in trainer.core.parameters() if p.grad is not None]
        results.append((terms["total"].detach().item(), terms["ce_rec"].detach().item(), grads))
    del trainer.classifier.forward_features
    assert calls.count(False) == 1  # only the tensor γ ran f on the reconstructions
    (total_a, ce_a, grads_a), (total_b, ce_b, grads_b) = results
    assert total_a == pytest.approx(total_b, rel=1e-6) and ce_a == ce_b == 0.0
    assert len(grads_a) == len(grads_b) > 0
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b)


def test_feature_term_is_the_distance_on_f_stage_maps(tmp_path, parts):
    """viscoin.feature_weight adds weight × the perceptual distance between f's stage maps of x̃ and
    of x (computed here from cosines), runs f on x̃ even while γ = 0, and trains through it."""
    cfg = tiny_config(tmp_path, iterations=1, dropout=0.0, feature_weight=2.0)
    trainer = _trainer(cfg, "feature", parts, n=8)
    images = torch.stack([TinyImages(4, 3)[i][0] for i in range(4)])
    terms = trainer.compute.losses(images, True, 0.0)
    assert terms["ce_rec"].item() == 0.0
    f, core, G = trainer.classifier, trainer.core, trainer.generator
    with torch.no_grad():
        _, maps = f.forward_features(images)
        w_plus = core(maps)[-1]
        reconstruction = G.synthesis(w_plus, noise_mode="const", fused_modconv=False)
        _, rec_maps = f.forward_features(reconstruction)
    expected = 2.0 * sum(
        (2 - 2 * torch.cosine_similarity(r, m, dim=1)).mean()
        for r, m in zip(rec_maps, maps, strict=True)
    )
    assert terms["feature"].item() == pytest.approx(expected.item(), rel=1e-4)
    trainer.core.zero_grad(set_to_none=True)
    terms["feature"].backward()
    translator_grads = [p.grad for p in trainer.core.translator.parameters() if p.grad is not None]
    assert translator_grads and any(g.abs().sum() > 0 for g in translator_grads)
    # off by default: no such term
    plain = _trainer(tiny_config(tmp_path, iterations=1), "plain", parts, n=8)
    assert "feature" not in plain.compute.losses(images, True, 0.0)


def test_speed_options_give_the_same_losses(tmp_path, parts):
    """bf16 + channels_last change how the step is computed, not what: the first step's losses
    (the same weights) match float32 to bf16 precision, the next ones stay close (after updates
    from bf16 gradients; how close depends on the CPU's bf16 kernels: 3.3 % on MSE at step 3 with
    AMX), and the gamma schedule switches the classifier term on."""
    records = {}
    for name, options in (
        ("fp32", {}),
        ("bf16", {"amp": "bf16", "channels_last": True}),
    ):
        cfg = tiny_config(
            tmp_path, iterations=3, dropout=0.0, gamma_start=2, feature_weight=0.5, **options
        )
        trainer = _trainer(cfg, name, parts, n=8)
        trainer.fit(progress=False)
        records[name] = [r for r in read_metrics(trainer.run.metrics) if r["split"] == "train"]
    for step, (a, b) in enumerate(zip(records["fp32"], records["bf16"], strict=True)):
        for key in ("total", "mse", "of", "ce_rec", "feature"):
            rel = 0.02 if step == 0 else 0.06
            assert b[key] == pytest.approx(a[key], rel=rel, abs=1e-3), (step, key)
    assert [r["ce_rec"] == 0 for r in records["fp32"]] == [True, True, False]


def test_resume_is_bit_exact(tmp_path, parts64):
    """Interrupted after 3 of 6 steps and resumed, a run ends where the uninterrupted one does, at
    64 px with dropout 0.5 (at 32 px Φ's maps are constant and dropout is inert, so a resume that
    lost the random state would still pass)."""
    cfg = tiny_config(
        tmp_path, iterations=6, res=64, dropout=0.5, noise_mode="random", real_batch=2, fake_batch=2
    )
    straight = _trainer(cfg, "straight", parts64, n=8)
    straight.fit(progress=False)

    first = _trainer(cfg, "resumed", parts64, n=8)
    first.fit(progress=False, stop_after=3)  # a checkpoint is always written when fit returns
    del first
    second = _trainer(cfg, "resumed", parts64, resume=True, n=8)
    assert second.step == 3
    second.fit(progress=False)

    assert _train_losses(straight) == _train_losses(second)
    _assert_same_weights(straight.core, second.core)


def _die_at_state_write(monkeypatch, module, call):
    """``module.save_state`` raises on its ``call``-th use (1-based), as a kill between a
    checkpoint's model file and its state file would stop the run."""
    import viscoin.utils.checkpoint as checkpoint

    calls = []

    def save_state(path, state):
        calls.append(path)
        if len(calls) == call:
            raise KeyboardInterrupt("killed between the two writes")
        return checkpoint.save_state(path, state)

    monkeypatch.setattr(module, "save_state", save_state)


def test_kill_between_model_and_state_writes_resumes_exactly(tmp_path, parts64, monkeypatch):
    """Killed after step 4's model file but before its state file: resume continues from the
    state of step 2 (rewriting the model file that ran ahead) and ends where an uninterrupted run
    does."""
    import viscoin.train.viscoin as viscoin_training
    from viscoin.utils.checkpoint import checkpoint_step

    cfg = tiny_config(tmp_path, iterations=6, res=64, dropout=0.5, noise_mode="random",
                      real_batch=2, fake_batch=2, checkpoint_every=2)  # fmt: skip
    straight = _trainer(cfg, "straight", parts64, n=8)
    straight.fit(progress=False)

    with monkeypatch.context() as patch:
        _die_at_state_write(patch, viscoin_training, call=2)
        with pytest.raises(KeyboardInterrupt):
            _trainer(cfg, "killed", parts64, n=8).fit(progress=False)
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert checkpoint_step(checkpoints / "viscoin.safetensors") == 4  # ran ahead of the state
    resumed = _trainer(cfg, "killed", parts64, resume=True, n=8)
    assert resumed.step == 2 and checkpoint_step(checkpoints / "viscoin.safetensors") == 2
    resumed.fit(progress=False)

    assert _train_losses(straight) == _train_losses(resumed)
    _assert_same_weights(straight.core, resumed.core)
    _assert_same_weights(straight.core, load_viscoin(checkpoints / "viscoin.safetensors").core)


def test_random_noise_is_seeded_and_reaches_the_images(tmp_path, parts):
    """Random training noise (the default) is a function of the seed and step: two runs give the
    same weights; constant noise gives other losses; another value is refused."""
    runs = {}
    for name, mode in (("a", "random"), ("b", "random"), ("const", "const")):
        trainer = _trainer(tiny_config(tmp_path, iterations=2, noise_mode=mode), name, parts, n=8)
        trainer.fit(progress=False)
        runs[name] = trainer
    _assert_same_weights(runs["a"].core, runs["b"].core)
    assert _train_losses(runs["a"]) == _train_losses(runs["b"])
    random_mse = [mse for _s, _t, mse in _train_losses(runs["a"])]
    const_mse = [mse for _s, _t, mse in _train_losses(runs["const"])]
    assert all(abs(r - c) > 1e-4 * c for r, c in zip(random_mse, const_mse, strict=True))
    # the generated half of the batch takes the noise too
    assert not torch.equal(runs["a"]._fake_batch(0), runs["const"]._fake_batch(0))
    assert torch.equal(runs["a"]._fake_batch(0), runs["b"]._fake_batch(0))

    from viscoin.errors import UserError

    with pytest.raises(UserError, match="viscoin.noise_mode must be one of random, const"):
        _trainer(tiny_config(tmp_path, noise_mode="none"), "bad-noise", parts)


def test_gradient_accumulation_equals_the_whole_batch(tmp_path, parts64):
    """grad_accum = 2 parts of 4 images give the update of one batch of 8, with dropout 0.5 and
    random noise (drawn per image of the global batch, whatever the split). With
    ``translator_input_norm=batch`` they would not: each part has its own batch statistics."""
    runs = {}
    for accum in (1, 2):
        cfg = tiny_config(
            tmp_path, iterations=2, res=64, dropout=0.5, noise_mode="random", grad_accum=accum
        )
        runs[accum] = _trainer(cfg, f"accum{accum}", parts64, n=8)
        runs[accum].fit(progress=False)
    # Adam turns the summation-order rounding of a gradient near 0 into up to a few % of the lr
    # (1e-3): a tenth of the lr still catches a part left out of the sum
    _assert_same_weights(runs[1].core, runs[2].core, exact=False, atol=1e-4)
    losses = [[t for _s, t, _m in _train_losses(runs[a])] for a in (1, 2)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_save_load_round_trip_and_export(tmp_path, parts):
    cfg = tiny_config(tmp_path, iterations=2)
    trainer = _trainer(cfg, "save", parts)
    trainer.fit(progress=False)
    model_file = trainer.run.checkpoints / "viscoin.safetensors"
    loaded = load_viscoin(model_file)
    images = TinyImages(4, 3).images
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model.explain(images)
    got = loaded.explain(images)
    for key in ("g_logits", "f_logits", "relevance", "reconstructions"):
        assert torch.allclose(got[key], expected[key], atol=1e-6), key
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())

    bundle = export_viscoin(model_file, tmp_path / "bundle.safetensors", embed=True)
    for part in parts:  # the bundle stands alone
        part.rename(part.with_suffix(".moved"))
    try:
        alone = load_viscoin(bundle)
        assert torch.allclose(
            alone.explain(images)["reconstructions"], expected["reconstructions"], atol=1e-6
        )
        from viscoin.errors import UserError

        with pytest.raises(UserError, match="which is missing"):
            load_viscoin(model_file)
    finally:
        for part in parts:
            part.with_suffix(".moved").rename(part)


def test_translator_options_survive_save_and_load(tmp_path, parts):
    cfg = tiny_config(
        tmp_path,
        iterations=2,
        translator_layers=2,
        translator_linear_output=True,
        translator_input_norm="batch",
    )
    trainer = _trainer(cfg, "omega", parts)
    trainer.fit(progress=False)
    loaded = load_viscoin(trainer.run.checkpoints / "viscoin.safetensors")
    omega = loaded.core.translator
    assert (omega.layers, omega.linear_output, omega.input_norm) == (2, True, "batch")
    assert omega.support_norm.num_batches_tracked.item() == 2  # running statistics were saved
    images = TinyImages(4, 3).images
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model.explain(images)["reconstructions"]
    assert torch.allclose(loaded.explain(images)["reconstructions"], expected, atol=1e-6)

    from viscoin.errors import UserError

    cfg = tiny_config(tmp_path, translator_input_norm="layer")
    with pytest.raises(UserError, match="translator_input_norm must be one of"):
        _trainer(cfg, "bad-norm", parts)


def test_learning_rate_schedule():
    cfg = tiny_config("/tmp", iterations=10_000)
    cfg.viscoin.lr, cfg.viscoin.decay_every, cfg.viscoin.decay_factor = 1.0, 1000, 0.8
    assert learning_rate(0, cfg) == 1.0 and learning_rate(5000, cfg) == 1.0
    assert learning_rate(5999, cfg) == 1.0 and learning_rate(6000, cfg) == pytest.approx(0.8)
    assert learning_rate(9000, cfg) == pytest.approx(0.8**4)


def test_incompatible_generator_resolution(tmp_path, parts):
    from viscoin.errors import UserError

    cfg = tiny_config(tmp_path)
    cfg.data.resolution = 64
    with pytest.raises(UserError, match="generator makes 32 px images but data.resolution is 64"):
        _trainer(cfg, "bad", parts)


# ---------------------------------------------------------------- DDP: 2 CPU processes (gloo)


# Two runs compared with one process. "exact": 64 px, dropout 0.5, random noise, L_of on from
# the first step; every draw must match, and the weights after 3 steps agree to float rounding.
# "demo": the demo's Ω (two layers, support standardised over the batch) and perceptual term as
# well. Its BatchNorm divides features whose spread over 8 images is near 0 by sqrt(var + 1e-5):
# a 1e-7 relative change of its input (another summation order) moves the gradients by ~1e-4
# relative, and Adam's ±lr first steps turn that into weight differences of order lr. So that run
# is compared after one step, on gradients (to 1e-3 of their scale; measured 3e-4, against
# 0.2-0.6 with per-rank statistics or dropout masks), loss and running statistics.
EXACT = {"res": 64, "dropout": 0.5, "noise_mode": "random", "warmup": 0}
DDP_RUNS = {
    "exact": (EXACT, 3),
    "demo": (
        {**EXACT, "translator_input_norm": "batch", "translator_layers": 2, "feature_weight": 1.0},
        1,
    ),
}


def _save_first_gradients(trainer, path) -> None:
    """Save the core's gradients of the first step (after DDP's all-reduce) to ``path``."""
    step = trainer.opt_concepts.step

    def saving_step(*args, **kwargs):
        if not path.exists():
            grads = {n: p.grad.clone() for n, p in trainer.core.named_parameters()}
            torch.save(grads, path)
        return step(*args, **kwargs)

    trainer.opt_concepts.step = saving_step


def _ddp_worker(rank: int, world: int, port: int, runs_dir: str, parts: tuple) -> None:
    from pathlib import Path

    torchrun_environment(rank, world, port)
    from viscoin.train.distributed import init_distributed, shutdown
    from viscoin.utils.runs import RunDir

    dist = init_distributed("cpu")
    for name, (settings, steps) in DDP_RUNS.items():
        cfg = tiny_config(runs_dir, iterations=steps, **settings)
        if dist.is_main:
            new_run(cfg.run.runs_dir, f"ddp-{name}", prefix="v")
        torch.distributed.barrier()
        res = cfg.data.resolution
        train, test = TinyImages(32, 0, res), TinyImages(8, 1, res)
        run = RunDir(Path(runs_dir) / f"ddp-{name}")
        trainer = ViscoinTrainer(cfg, run, *parts, train, test, dist)
        if dist.is_main:
            _save_first_gradients(trainer, run.path / "gradients.pt")
        trainer.fit(progress=False)
    shutdown(dist)


def _close(got, expected, name, **tolerance):
    torch.testing.assert_close(got, expected, msg=lambda m: f"{name}: {m}", **tolerance)


def test_ddp_two_processes_match_single_process(tmp_path, parts64):
    """Two gloo processes with half the global batch each follow one process with all of it."""
    singles = {}
    for name, (settings, steps) in DDP_RUNS.items():
        cfg = tiny_config(tmp_path, iterations=steps, **settings)
        singles[name] = _trainer(cfg, f"single-{name}", parts64)
        _save_first_gradients(singles[name], singles[name].run.path / "gradients.pt")
        singles[name].fit(progress=False)
    mp.start_processes(
        _ddp_worker, args=(2, free_port(), str(tmp_path), parts64), nprocs=2, start_method="spawn"
    )

    def train_records(path):
        return [r for r in read_metrics(path) if r["split"] == "train"]

    for name, (_settings, steps) in DDP_RUNS.items():
        single, ddp_dir = singles[name], tmp_path / f"ddp-{name}"
        ddp = load_viscoin(ddp_dir / "checkpoints" / "viscoin.safetensors").core
        # only rank 0 wrote: one metrics file with one record per step
        records = train_records(ddp_dir / "metrics.jsonl")
        assert [r["step"] for r in records] == list(range(1, steps + 1))
        losses = [r["total"] for r in train_records(single.run.metrics)]
        assert [r["total"] for r in records] == pytest.approx(losses, rel=1e-5), name
        expected, got = (torch.load(d / "gradients.pt") for d in (single.run.path, ddp_dir))
        assert expected["head.linear.weight"].abs().max() > 0  # Θ and its dropout took part
        for key, g in expected.items():
            _close(got[key], g, f"{name} {key}", rtol=0, atol=1e-3 * g.abs().max().item())
        if name == "exact":
            # Adam divides by sqrt(v): where a gradient is near 0, the all-reduce's summation
            # order moves that weight's update by a visible part of the lr (1e-3 per step)
            _assert_same_weights(single.core, ddp, exact=False, atol=1e-4)
        else:
            norm_single, norm_ddp = single.core.translator.support_norm, ddp.translator.support_norm
            for key, value in norm_single.state_dict().items():
                _close(
                    norm_ddp.state_dict()[key], value, f"support_norm.{key}", rtol=1e-5, atol=1e-7
                )


def test_a_moved_runs_folder_still_finds_its_classifier_and_generator(tmp_path, cli):
    """A tiny run whose f and G lie in the same runs folder; the folder is moved as a whole (the
    old paths no longer exist): loading, --reference export and --embed export still work."""
    import shutil

    runs = tmp_path / "runs"
    classifier, generator = make_parts(runs / "parts")
    cfg = tiny_config(runs, iterations=1)
    trainer = _trainer(cfg, "v", (classifier, generator), n=8)
    trainer.fit(progress=False)
    images = TinyImages(2, 3).images
    expected = load_viscoin(trainer.run.checkpoints / "viscoin.safetensors").explain(images)
    moved = tmp_path / "elsewhere" / "runs"
    moved.parent.mkdir()
    shutil.move(str(runs), str(moved))
    assert not runs.exists()

    loaded = load_viscoin(moved / "v" / "checkpoints" / "viscoin.safetensors")
    assert torch.equal(loaded.explain(images)["reconstructions"], expected["reconstructions"])
    for flag in ("--embed", "--reference"):
        out = tmp_path / f"export{flag}.safetensors"
        proc = cli("export", str(moved / "v"), str(out), flag)
        assert proc.returncode == 0, proc.stderr
        got = load_viscoin(out).explain(images)["reconstructions"]
        assert torch.equal(got, expected["reconstructions"])
