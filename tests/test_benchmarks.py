"""The benchmark scripts still run (tiny sizes, CPU): their numbers live in BENCHMARKS.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_train_step_tiny(tmp_path):
    out = tmp_path / "step.json"
    text = _run(
        "benchmarks/train_step.py", "--tiny", "--variants", "fp32", "bf16+cl", "--json", str(out)
    )
    assert "ms/it" in text
    results = json.loads(out.read_text())["results"]
    assert [r["variant"] for r in results] == ["fp32", "bf16+cl"]
    for r in results:
        assert r["gflop_per_iter"] > 0 and r["ms_per_iter"] > 0
        assert {"sample G", "synthesis", "backward", "optimiser"} <= set(r["parts_ms"])
        assert 0 < r["first_step_s"] <= r["warmup_s"] and r["compile_s"] == {}  # nothing compiled


def test_train_step_times_the_tracing_with_another_compile_backend(tmp_path):
    # Dynamo + AOTAutograd without code generation: seconds on the tiny models (Inductor's C++
    # code generation there takes minutes)
    out = tmp_path / "trace.json"
    _run(
        "benchmarks/train_step.py", "--tiny", "--no-flops", "--no-lpips", "--variants",
        "fp32+compile", "--compile-backend", "aot_eager", "--json", str(out),
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["info"]["compile_backend"] == "aot_eager"
    assert data["info"]["compiled_with_backend"] == 2  # the losses and the sampling
    (r,) = data["results"]
    assert r["variant"] == "fp32+compile" and r["warmup_s"] > 0 and r["ms_per_iter"] > 0
    # the warm-up by compiler stage: Dynamo's tracing is there, and it fits in the first step
    assert 0 < max(r["compile_s"].values()) <= r["first_step_s"] <= r["warmup_s"]


def test_train_step_curves_tiny(tmp_path):
    out = tmp_path / "curves.json"
    text = _run(
        "benchmarks/train_step.py",
        "--tiny",
        "--curve",
        "3",
        "--no-flops",
        "--no-lpips",  # LPIPS's path is the step test's
        "--variants",
        "fp32",
        "bf16",
        "fp32+subpx",
        "fp32",
        "--json",
        str(out),
    )
    assert "max relative difference" in text
    data = json.loads(out.read_text())
    curves = data["curves"]
    assert all(len(c["total"]) == 3 for c in curves.values())
    # fp32 named twice runs twice: on the CPU the same weights and batches give the same losses
    # (the null of the comparison), while bf16 differs
    again = data["comparisons"]["fp32 cb32768 (run 2)"]
    assert set(again) == {"total", "mse", "ce_rec", "of"}  # no LPIPS here
    assert all(d["mean"] == d["max"] == 0.0 for d in again.values())
    assert data["comparisons"]["bf16 cb32768"]["total"]["max"] > 0
    # sub-pixel upsampling computes the same step as the transposed convolution
    by_variant = {key.split()[0]: curve["total"] for key, curve in curves.items()}
    fp32, subpx = by_variant["fp32"], by_variant["fp32+subpx"]
    assert fp32 == pytest.approx(subpx, rel=1e-4)


def test_generator_tiny():
    text = _run("benchmarks/generator.py", "--tiny", "--variants", "fp32", "bf16+cl+unfused")
    assert "bf16+cl+unfused" in text


def test_generator_fid_runs_on_the_shipped_generator(tmp_path):
    from viscoin.models.classifier import Classifier, save_classifier

    torch.manual_seed(0)
    classifier = save_classifier(Classifier("resnet18", 10), tmp_path / "f.safetensors")
    text = _run("benchmarks/generator_fid.py", "--classifier", str(classifier), "--n", "16")
    assert "fd_classifier: generated vs real" in text


def test_demo_sweep_tiny(tmp_path):
    from viscoin.data import build_dataset
    from viscoin.demo import demo_config
    from viscoin.models.classifier import Classifier, save_classifier

    out = tmp_path / "sweep"
    out.mkdir()
    # f and f' given (untrained: the sweep's own classifier training is the demo's, tested there)
    classes = build_dataset(demo_config(True, "cpu", 0).data, "test").classes
    f, f_independent = (
        save_classifier(Classifier("resnet18", len(classes)), tmp_path / name, classes)
        for name in ("f.safetensors", "f-independent.safetensors")
    )
    # a run of an earlier sweep into the same folder stays in sweep.json
    earlier = {"variant": "earlier", "seed": 3, "overrides": [], "auc_min_defining": 0.5}
    (out / "sweep.json").write_text(json.dumps({"rows": [earlier]}))
    text = _run(
        "benchmarks/demo_sweep.py", "--tiny", "--device", "cpu", "--out", str(out),
        "--set", "viscoin.iterations=3", "--classifier", str(f),
        "--independent-classifier", str(f_independent), "--variant", "k8:viscoin.n_concepts=8",
    )  # fmt: skip
    assert "| k8 | 1 |" in text
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["earlier", "k8"] and rows[0] == earlier
    k8 = rows[1]
    assert k8["overrides"] == ["viscoin.iterations=3", "viscoin.n_concepts=8"]
    saved = json.loads((out / "k8-s0" / "metrics.json").read_text())
    assert saved["sparsity"]["concepts"] == 8
    assert saved["independent_classifier"] == str(f_independent)
    assert {"auc:body_colour", "auc:wing_pattern", "auc:head_crest"} <= set(k8)
    summary = _run("benchmarks/demo_sweep.py", "--table", str(out / "sweep.json"))
    assert "| k8 | 1 |" in summary and "seeds with every class-defining AUC" in summary


def test_demo_sweep_table_of_the_recorded_results():
    text = _run("benchmarks/demo_sweep.py", "--table", "benchmarks/results/demo-sweep/h200.json")
    assert text.count("\n") >= 3 and "| δ 0.005 (the demo) | 9 |" in text


def test_augment_tiny(tmp_path):
    out = tmp_path / "augment.json"
    text = _run(
        "benchmarks/augment.py", "--device", "cpu", "--resolutions", "16", "--batch", "2",
        "--iters", "1", "--json", str(out),
    )  # fmt: skip
    assert "R1 through it" in text
    result = json.loads(out.read_text())
    assert result["check"] == {"gradcheck": True, "gradgradcheck": True}
    assert result["timings"]["16"]["r1_ms"] > 0


def test_explore_latency_on_a_tiny_run(tmp_path):
    pytest.importorskip("starlette")
    from tests.app.conftest import write_run

    run = write_run(tmp_path)
    out = tmp_path / "latency.json"
    text = _run(
        "benchmarks/explore_latency.py", str(run), "--device", "cpu", "--moves", "3",
        "--warmup", "1", "--json", str(out),
    )  # fmt: skip
    assert "median ms" in text and "32 px, 6 concepts, 5 sliders" in text
    results = json.loads(out.read_text())["results"]
    assert {"regenerate (one slider move)", "Ω + G (decode_intervention)"} <= set(results)
    assert all(row["median_ms"] > 0 for row in results.values())


def test_gan_vs_official_collapse_runs_viscoin_on_a_folder(tmp_path):
    from PIL import Image

    for split, label in [(s, c) for s in ("train", "test") for c in range(2)]:
        folder = tmp_path / "data" / split / str(label)
        folder.mkdir(parents=True)
        for i in range(8):
            pixels = torch.randint(0, 256, (16, 16), generator=torch.Generator().manual_seed(i))
            Image.fromarray(pixels.numpy().astype("uint8") // (label + 1)).save(folder / f"{i}.png")
    out = tmp_path / "viscoin.jsonl"
    args = ["--data", str(tmp_path / "data"), "--res", "16", "--steps", "2", "--every", "1"]
    _run(
        "benchmarks/gan_vs_official.py",
        "collapse",
        "--tiny",
        *args,
        "--samples",
        "16",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["impl"] == "viscoin" and [r["step"] for r in rows[1:]] == [0, 1, 2]
    assert all(1 <= r["G_ema"]["classes_at_5pct"] <= 2 for r in rows[1:])


def test_gan_vs_official_speed_runs_viscoin(tmp_path):
    out = tmp_path / "speed.json"
    args = ["--tiny", "--res", "16", "--steps", "2", "--warmup", "1", "--device", "cpu"]
    prof = tmp_path / "profile"
    _run("benchmarks/gan_vs_official.py", "speed", *args, "--out", str(out), "--profile", str(prof))
    (row,) = json.loads(out.read_text())
    assert row["impl"] == "viscoin" and row["resolution"] == 16 and row["s_per_kimg"] > 0
    assert row["warmup_s"] > 0
    table = (prof / "profile-viscoin-16.txt").read_text()
    assert "conv" in table and "Self CPU" in table  # the operators, ranked


def test_profile_summary_splits_gpu_time_by_kind(tmp_path):
    import gzip

    def kernel(name, us):
        return {"ph": "X", "cat": "kernel", "name": name, "dur": us, "ts": 0}

    events = [
        kernel("triton_poi_fused_add_0", 3000),
        kernel("sm90_xmma_dgrad_implicit_gemm_bf16", 1500),
        kernel("sm90_xmma_fprop_implicit_gemm_bf16", 600),
        kernel("nvjet_tst_128x64", 900),
    ]
    events.append({"ph": "X", "cat": "cpu_op", "name": "aten::add", "dur": 99999, "ts": 0})  # host
    path = tmp_path / "t.trace.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)
    text = _run("benchmarks/profile_summary.py", "--steps", "1", str(path))
    assert "4 kernels, GPU busy 6.0 ms per step" in text
    assert (
        "triton element-wise 3.0, convolution backward 1.5, matrix product 0.9, "
        "convolution forward 0.6" in text
    )
    # three profiled steps (the default): per step, a third
    assert "GPU busy 2.0 ms per step" in _run("benchmarks/profile_summary.py", str(path))


def test_trainer_graphs_script_runs_the_trainer_and_tabulates_its_losses(tmp_path):
    # on the CPU every run is eager (compile is ignored off CUDA): the same losses four times
    import os

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "benchmarks/trainer_graphs.sh", str(tmp_path / "runs"), "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert (
        "resuming with changed settings: viscoin.iterations 20 -> 30" in result.stderr.splitlines()
    )
    row = next(line for line in lines if line.startswith("  30 "))
    assert row.split()[1:4] == ["nan"] * 3 and row.split()[4] != "nan"  # only the resumed run
    for name in ("compiled", "graphs", "graphs-resumed"):
        assert f"{name} vs eager: largest relative difference of the logged total 0.0000" in lines
