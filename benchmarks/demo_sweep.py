"""The demo's VisCoIN stage over settings × seeds, against one fixed classifier.

Each run trains VisCoIN with the demo's settings (the ``demo`` preset) plus the variant's
overrides, evaluates it as ``viscoin demo`` does, and the script prints, per variant, the mean and
spread over seeds of the numbers the demo's quality criteria are about. Runs go to parallel
processes (``--jobs``), which is how a GPU with many CPU cores sweeps many small runs at once.

    python benchmarks/demo_sweep.py --out runs/sweep --seeds 0 1 2 \\
        --variant base --variant d02:viscoin.delta=0.02 --variant k64:viscoin.n_concepts=64

A variant is ``NAME`` or ``NAME:key=value,key=value``; ``untrained:viscoin.lr=0`` is the
ensemble that knows nothing (Ψ, Θ, Ω as initialised), against which every null is checked.
``--multipliers 1 2 4`` also measures consistency at those λ (x⁺ sets φ_k to λ × its peak map),
each beside its shuffled-label, random-direction and unread-concept nulls. Without ``--classifier`` the demo's
classifier is trained first (seed 0) into ``OUT/classifier``. Results: ``OUT/sweep.json`` (every
run's summary, kept across sweeps into the same folder) and ``OUT/<variant>-s<seed>/`` (config,
checkpoints, metrics.json).
``--table A.json B.json`` prints the table of earlier sweeps together.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from viscoin.demo import (
    demo_config,
    demo_eval_options,
    evaluate_demo_run,
    shipped_generator,
    train_demo_classifier,
    train_demo_viscoin,
)

COLUMNS = (
    "acc_g",
    "fidelity",
    "mse",
    "ff",
    "ff_random",
    "ff_mean",
    "ff_random_mean",
    "ff_diff",
    "ff_diff_ci_low",
    "ff_matched_mean",
    "ff_matched_diff",
    "ff_matched_ci_low",
    "consistency",
    "consistency_null",
    "consistency_direction",
    "fi_recon_agrees",
    "fooling_gap",
    "rec_all_null",
    "auc_above_null",
    "dead",
    "relevant",
    "seconds",
)


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, rest = text.partition(":")
    return name, [o for o in rest.split(",") if o]


def train_classifier_once(
    out: Path, device: str, tiny: bool, name: str = "classifier", seed: int = 0
) -> Path:
    """The demo's classifier (``seed`` 0), or with ``name`` classifier-independent and seed 1 the
    demo's independent classifier f', into ``out/name``."""
    from viscoin.data import build_dataset
    from viscoin.utils.device import resolve_device, seed_everything

    cfg = demo_config(tiny, device, seed)
    seed_everything(seed)
    train_set, test_set = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "test")
    dev = resolve_device(device)
    classifier, result = train_demo_classifier(cfg, out, train_set, test_set, dev, False, name=name)
    print(f"{name} test accuracy {result['test_accuracy']:.4f}", flush=True)
    return classifier


def summarise(metrics: dict) -> dict:
    """The demo's quality numbers of one run's ``metrics.json``."""
    ff = metrics["faithfulness"]
    # the baseline: random *active* concepts, paired per image ("null"); runs recorded before it
    # have the unpaired draw among all concepts ("random")
    base = "null" if "median_null_f@0.1" in ff else "random"
    row = {
        "acc_f": metrics["acc_f"],
        "acc_g": metrics["acc_g"],
        "fidelity": metrics["fidelity"],
        "mse": metrics["mse"],
        "ff": ff["median_ff_f@0.1"],
        "ff_random": ff[f"median_{base}_f@0.1"],
        "consistency": metrics["consistency"]["consistency_mean"],
        "dead": metrics["sparsity"]["dead_concepts"],
        "relevant": metrics["sparsity"]["relevant_concepts_per_image"],
    }
    if "mean_ff_f@0.1" in ff:
        row["ff_mean"] = ff["mean_ff_f@0.1"]
        row["ff_random_mean"] = ff[f"mean_{base}_f@0.1"]
    if "paired_f@0.1" in ff:
        row["ff_diff"] = ff["paired_f@0.1"]["diff_mean"]
        row["ff_diff_ci_low"] = ff["paired_f@0.1"]["diff_ci_low"]
    if "paired_matched_f@0.1" in ff:
        row["ff_matched_mean"] = ff["mean_matched_f@0.1"]
        row["ff_matched_diff"] = ff["paired_matched_f@0.1"]["diff_mean"]
        row["ff_matched_ci_low"] = ff["paired_matched_f@0.1"]["diff_ci_low"]
    if "null_mean" in metrics["consistency"]:
        row["consistency_null"] = metrics["consistency"]["null_mean"]
    if "direction_mean" in metrics["consistency"]:
        row["consistency_direction"] = metrics["consistency"]["direction_mean"]
    independent = metrics.get("independent", {})
    if "recon_agrees_with_f" in independent:
        row["fi_recon_agrees"] = independent["recon_agrees_with_f"]
        row["fooling_gap"] = independent["fooling_gap"]
    shown = metrics.get("recon_attributes", {})
    if "baselines" in shown and "all_class_defining" in shown:
        row["rec_all_null"] = max(b["all_class_defining"] for b in shown["baselines"].values())
    if "all_class_defining" in shown:
        row["rec_all"] = shown["all_class_defining"]
        row["rec_worst_class"] = shown["worst_class"]["all_class_defining"]["accuracy"]
    alignment = metrics.get("attribute_alignment", {})
    defining = {k: v for k, v in alignment.items() if v.get("class_defining")}
    for name in defining:
        if name in shown:
            row[f"rec:{name}"] = shown[name]
    for name, value in defining.items():
        row[f"auc:{name}"] = value["best_auc"]
    if defining and all("null_p99" in v for v in defining.values()):
        # every class-defining attribute's mean best AUC above its permutation null's 99th pct.
        row["auc_above_null"] = float(all(v["auc"] > v["null_p99"] for v in defining.values()))
    if defining:
        row["auc_min_defining"] = min(v["best_auc"] for v in defining.values())
    row["auc_nuisance_max"] = max(
        (v["best_auc"] for k, v in alignment.items() if k not in defining), default=float("nan")
    )
    return row


def run_one(
    name: str,
    overrides: list[str],
    seed: int,
    out: Path,
    classifier: Path,
    device: str,
    tiny: bool,
    threads: int,
    independent: Path | None = None,
    multipliers: tuple[float, ...] = (),
) -> dict:
    """Train and evaluate one (variant, seed); returns its summary row."""
    from viscoin.data import build_dataset
    from viscoin.utils.device import resolve_device, seed_everything

    torch.set_num_threads(threads)
    start = time.time()
    cfg = demo_config(tiny, device, seed, overrides)
    dev = resolve_device(cfg.run.device)
    seed_everything(seed)
    train_set, test_set = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "test")
    run_path = train_demo_viscoin(
        cfg,
        out,
        f"{name}-s{seed}",
        classifier,
        shipped_generator(),
        train_set,
        test_set,
        dev,
        False,
    )
    model, metrics = evaluate_demo_run(
        run_path, test_set, dev, tiny, seed, False, independent=independent
    )
    row = {"variant": name, "seed": seed, "overrides": overrides, **summarise(metrics)}
    if multipliers:
        row.update(consistency_at(model, test_set, metrics, dev, tiny, seed, multipliers))
    row["seconds"] = time.time() - start
    return row


def consistency_at(
    model, test_set, metrics: dict, device, tiny: bool, seed: int, multipliers: tuple[float, ...]
) -> dict:
    """Consistency of the evaluated concepts at each λ in ``multipliers``, with its nulls
    (columns ``cons@λ``, ``shuffled@λ``, ``direction@λ``, ``unread@λ``)."""
    from viscoin.evaluate.consistency import concept_consistency, summarise_consistency
    from viscoin.evaluate.suite import _images

    options = demo_eval_options(tiny, seed)
    concepts = [int(k) for k in metrics["consistency"].get("per_concept", {})]
    if not concepts:
        return {}
    images = torch.cat(
        list(_images(test_set, options.consistency_images, seed + 2, options.batch_size, device))
    )
    row = {}
    for lam in multipliers:
        per = concept_consistency(
            model, images, concepts, multiplier=lam, batch_size=options.batch_size, seed=seed,
            shuffles=3, directions=3, unread_concepts=concepts[:1],
        )  # fmt: skip
        summary = summarise_consistency(per)
        row[f"cons@{lam:g}"] = summary["consistency_mean"]
        row[f"shuffled@{lam:g}"] = summary["null_mean"]
        row[f"direction@{lam:g}"] = summary["direction_mean"]
        row[f"unread@{lam:g}"] = summary["unread_mean"]
    return row


def table(rows: list[dict], variants: list[str]) -> str:
    """Per variant: mean ± standard deviation over its seeds (markdown)."""
    extra = ("auc", "rec", "cons@", "shuffled@", "direction@", "unread@")
    keys = [*COLUMNS, *(k for k in rows[0] if k.startswith(extra) and k not in COLUMNS)]
    keys = [k for k in keys if all(k in r for r in rows)]
    aligned = "auc_min_defining" in keys
    lines = [
        "| variant | seeds | "
        + " | ".join(k.removeprefix("auc:").replace("rec:", "shown ") for k in keys)
        + (" | seeds with every class-defining AUC ≥ 0.9 |" if aligned else " |"),
        "|---|---|" + "---|" * (len(keys) + aligned),
    ]
    for name in variants:
        group = [r for r in rows if r["variant"] == name]
        if not group:
            continue
        cells = []
        for k in keys:
            values = [float(r[k]) for r in group]
            mean = statistics.fmean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            digits = 0 if k == "seconds" else 3
            cells.append(
                f"{mean:.{digits}f} ± {spread:.{digits}f}" if spread else f"{mean:.{digits}f}"
            )
        if aligned:
            cells.append(f"{sum(r['auc_min_defining'] >= 0.9 for r in group)}/{len(group)}")
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder of the runs and sweep.json")
    parser.add_argument(
        "--table", type=Path, nargs="+", help="only print the table of these sweep.json files"
    )
    parser.add_argument("--classifier", type=Path, help="demo classifier (default: train one)")
    parser.add_argument(
        "--independent-classifier",
        type=Path,
        help="the classifier f' that also scores the reconstructions (default: OUT's, or train one)",
    )
    parser.add_argument("--variant", action="append", default=[], help="NAME[:k=v,k=v]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per run (0: cores/jobs)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", dest="common", action="append", default=[], help="for every run")
    parser.add_argument("--tiny", action="store_true", help="the demo's --quick sizes (smoke test)")
    parser.add_argument(
        "--multipliers", type=float, nargs="*", default=[], help="consistency also at these λ"
    )
    args = parser.parse_args(argv)

    if args.table:
        rows = [row for path in args.table for row in json.loads(path.read_text())["rows"]]
        print(table(rows, list(dict.fromkeys(r["variant"] for r in rows))))
        return 0
    if args.out is None:
        parser.error("--out is required (or --table to summarise earlier sweeps)")
    variants = [parse_variant(v) for v in (args.variant or ["base"])]
    args.out.mkdir(parents=True, exist_ok=True)
    classifier = args.classifier or train_classifier_once(args.out, args.device, args.tiny)
    earlier_independent = args.out / "classifier-independent" / "checkpoints" / "best.safetensors"
    if args.independent_classifier:
        independent = args.independent_classifier
    elif earlier_independent.is_file():  # an earlier sweep into the same folder trained it
        independent = earlier_independent
    else:
        independent = train_classifier_once(
            args.out, args.device, args.tiny, "classifier-independent", seed=1
        )
    threads = args.threads or max(1, (mp.cpu_count() or 1) // args.jobs)
    jobs = [
        (name, [*args.common, *overrides], seed)
        for name, overrides in variants
        for seed in args.seeds
    ]
    # runs of earlier sweeps into the same folder stay in sweep.json (a run folder is never reused)
    result_path = args.out / "sweep.json"
    earlier = json.loads(result_path.read_text())["rows"] if result_path.is_file() else []
    rows: list[dict] = []
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = {
            pool.submit(
                run_one,
                name,
                o,
                seed,
                args.out,
                classifier,
                args.device,
                args.tiny,
                threads,
                independent,
                tuple(args.multipliers),
            ): (name, seed)
            for name, o, seed in jobs
        }
        for future in as_completed(futures):
            name, seed = futures[future]
            try:
                row = future.result()
            except Exception as error:  # one failed run must not lose the others
                print(f"{name} seed {seed} failed: {error!r}", file=sys.stderr, flush=True)
                continue
            rows.append(row)
            aucs = " ".join(
                f"{k.removeprefix('auc:')} {v:.3f}" for k, v in row.items() if k.startswith("auc")
            )
            print(
                f"{name} s{seed}: mse {row['mse']:.4f} ff {row['ff']:.3f} acc_g {row['acc_g']:.3f} "
                f"dead {row['dead']} {aucs} ({row['seconds']:.0f}s)",
                flush=True,
            )
            result_path.write_text(json.dumps({"rows": [*earlier, *rows]}, indent=1))
    if not rows:
        print("every run failed", file=sys.stderr)
        return 1
    every = [*earlier, *rows]
    print(table(every, list(dict.fromkeys(r["variant"] for r in every))))
    return 0 if len(rows) == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
