"""``viscoin evaluate``: every metric of METHOD.md §4 for one ensemble on one test split.

One pass over the test images gives accuracy, fidelity, reconstruction errors, Fréchet distances,
sparsity and the activations for attribute alignment; faithfulness and consistency then run on a
seeded random subset. Results go to ``metrics.json`` and a Markdown table ``metrics.md``.

Every number comes with its null, what a model that knows nothing would score: accuracy beside the
majority class, fidelity beside the agreement of independent predictions with the same class
frequencies, faithfulness beside removing as many random active concepts (and as many concepts of
matched activation), alignment beside a permutation of the attributes and beside a freshly
initialised Ψ reading the same f, consistency beside shuffled labels and a random direction of the
concept's strength. With an independently trained
classifier f' (``EvalOptions.independent``), the reconstructions are also scored by f': f is
trained against (γ·CE(f(x̃), f(x))), so it may accept reconstructions that do not look right; f'
was not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from viscoin.data.transforms import to_uint8
from viscoin.evaluate.alignment import attribute_alignment
from viscoin.evaluate.basic import add_batch_sums
from viscoin.evaluate.consistency import concept_consistency, summarise_consistency
from viscoin.evaluate.faithfulness import faithfulness_scores, summarise_faithfulness
from viscoin.evaluate.fid import (
    RunningStats,
    classifier_features,
    frechet_distance,
    inception_features,
)
from viscoin.evaluate.recon_attributes import (
    attributes_shown,
    can_draw_counterfactuals,
    summarise_recon_attributes,
)
from viscoin.models.head import ConceptHead
from viscoin.models.viscoin import Viscoin
from viscoin.utils.io import atomic_write_text


@dataclass
class EvalOptions:
    batch_size: int = 32
    max_images: int = 0  # 0: the whole test split
    faithfulness_images: int = 1000
    thresholds: tuple[float, ...] = (0.1, 0.2, 0.4)
    consistency_concepts: int = 10
    consistency_images: int = 200
    relevance_threshold: float = 0.2
    # reconstructions read for their attributes (datasets that draw counterfactuals); 0: none
    recon_attribute_images: int = 1000
    fid: bool = True
    inception_weights: str | None = None
    lpips: torch.nn.Module | None = None
    # an independently trained classifier f' (images in [−1, 1] → logits) that scores x̃ too
    independent: torch.nn.Module | None = None
    intervention: str = "isolated"  # how removals / amplifications reach Ω (INTERVENTIONS)
    consistency_shuffles: int = 5
    # random directions of each concept's strength the consistency probe is compared with
    consistency_directions: int = 3
    # x⁺ sets φ_k to this × its strongest map: 1 stays in the generator's range (the paper: 4)
    consistency_multiplier: float = 1.0
    alignment_permutations: int = 200
    # alignment also for a freshly initialised Ψ on the same f (attribute_alignment's
    # untrained_auc): a random reading of f's features already carries what f encodes
    untrained_reference: bool = True
    seed: int = 0
    progress: bool = False


@torch.no_grad()
def evaluate_model(
    model: Viscoin, test_set: Dataset, device: torch.device, options: EvalOptions | None = None
) -> dict[str, Any]:
    """All metrics as a nested dict of numbers (see module docstring)."""
    opt = options or EvalOptions()
    model.eval().to(device)
    subset = _subset(test_set, opt.max_images, opt.seed)
    loader = DataLoader(subset, batch_size=opt.batch_size, shuffle=False)
    inception = None
    if opt.fid:
        inception = inception_features(opt.inception_weights, str(device))
    stats = {name: RunningStats() for name in ("cls_real", "cls_fake", "inc_real", "inc_fake")}
    cls_features = classifier_features(model.classifier)
    sums = {"acc_f": 0.0, "acc_g": 0.0, "fidelity": 0.0, "mse": 0.0, "l1": 0.0, "lpips": 0.0}
    activations, relevant = [], []
    base = getattr(test_set, "dataset", test_set)
    positions = subset.indices if isinstance(subset, Subset) else range(len(subset))
    counterfactuals = (
        opt.recon_attribute_images > 0
        and can_draw_counterfactuals(test_set)
        and bool(base.attribute_names)
    )
    shown = []
    count = 0
    image_sum = None  # of the images whose reconstructions are read: the mean-image null
    predictions: dict[str, list[torch.Tensor]] = {}
    independent = opt.independent.eval().to(device) if opt.independent is not None else None
    # Ψ as initialised, reading the same f: what alignment owes to f's features, not to training
    fresh = _fresh_extractor(model, opt.seed).to(device) if opt.untrained_reference else None
    fresh_activations = []
    from tqdm import tqdm

    for images, labels in tqdm(
        loader, desc="evaluate", disable=not opt.progress, dynamic_ncols=True
    ):
        images, labels = images.to(device), labels.to(device)
        out = model(images)
        recon = model.generator.synthesis(out.w_plus, noise_mode="const").float().clamp(-1, 1)
        add_batch_sums(sums, out, recon, images, labels, opt.lpips)
        real_u8, fake_u8 = to_uint8(images), to_uint8(recon)
        stats["cls_real"].update(cls_features(real_u8))
        stats["cls_fake"].update(cls_features(fake_u8))
        if inception is not None:
            stats["inc_real"].update(inception(real_u8))
            stats["inc_fake"].update(inception(fake_u8))
        activations.append(out.activations.float().cpu())
        if fresh is not None and getattr(base, "attribute_names", None):
            _, stage_maps = model.classifier.forward_features(images)
            fresh_maps, _ = fresh(stage_maps)
            fresh_activations.append(ConceptHead.activations(fresh_maps).float().cpu())
        relevant.append((model.relevance(out) > opt.relevance_threshold).sum(1).float().cpu())
        _collect(predictions, labels, out, model.classifier, recon, images, independent)
        todo = min(images.shape[0], opt.recon_attribute_images - count)
        if counterfactuals and todo > 0:
            batch = positions[count : count + todo]
            shown.append(attributes_shown(recon[:todo], batch, base, base.attribute_names))
            part = images[:todo].float().sum(0).cpu()
            image_sum = part if image_sum is None else image_sum + part
        count += images.shape[0]
    metrics: dict[str, Any] = {
        k: v / count for k, v in sums.items() if k != "lpips" or opt.lpips is not None
    }
    metrics["images"] = count
    metrics["nulls"] = _prediction_nulls(predictions)
    if independent is not None:
        metrics["independent"] = _independent_scores(predictions)
    metrics["fd_classifier"] = frechet_distance(
        *stats["cls_real"].mean_cov(), *stats["cls_fake"].mean_cov()
    )
    if inception is not None:
        metrics["fid"] = frechet_distance(
            *stats["inc_real"].mean_cov(), *stats["inc_fake"].mean_cov()
        )
    acts = torch.cat(activations).numpy()
    mean_activation = acts.mean(0)
    metrics["sparsity"] = {
        "relevant_concepts_per_image": float(torch.cat(relevant).mean()),
        "threshold": opt.relevance_threshold,
        "dead_concepts": int((mean_activation < 1e-6).sum()),
        "concepts": int(acts.shape[1]),
        "relevant_fraction": float(torch.cat(relevant).mean()) / acts.shape[1],
        "active_per_image": float((acts > 1e-6).sum(1).mean()),
    }
    metrics["faithfulness"] = _faithfulness(model, subset, device, opt)
    alive = [int(k) for k in np.argsort(-mean_activation) if mean_activation[k] >= 1e-6]
    metrics["consistency"] = _consistency(
        model, subset, alive[: opt.consistency_concepts], device, opt
    )
    if getattr(base, "attribute_names", None):
        attributes = np.asarray(base.all_attributes())[np.asarray(positions)]
        if counterfactuals:
            defining = base.attribute_is_class_defining or [False] * len(base.attribute_names)
            read = np.concatenate(shown)
            mean_image = (image_sum / len(read))[None].expand(len(read), -1, -1, -1)
            mean_read = attributes_shown(
                mean_image, positions[: len(read)], base, base.attribute_names
            )
            metrics["recon_attributes"] = summarise_recon_attributes(
                read,
                attributes[: len(read)],
                [base.labels[i] for i in positions[: len(read)]],
                base.attribute_names,
                base.classes,
                base.attribute_values,
                [a for a, d in zip(base.attribute_names, defining, strict=True) if d],
                null_readings={"mean_image": mean_read},
            )
        metrics["attribute_alignment"] = attribute_alignment(
            acts,
            attributes,
            base.attribute_names,
            getattr(base, "attribute_is_class_defining", None),
            permutations=opt.alignment_permutations,
            seed=opt.seed,
        )
        if fresh_activations:
            untrained = attribute_alignment(
                torch.cat(fresh_activations).numpy(), attributes, base.attribute_names,
                permutations=0,
            )  # fmt: skip
            for name, entry in metrics["attribute_alignment"].items():
                if name in untrained:
                    entry["untrained_auc"] = untrained[name]["auc"]
                    entry["untrained_best_auc"] = untrained[name]["best_auc"]
    return metrics


def _fresh_extractor(model: Viscoin, seed: int) -> torch.nn.Module:
    """A Ψ of the model's architecture with freshly initialised weights (seeded, global RNG
    untouched), in eval mode."""
    config = model.core.extractor.config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model.core.extractor)(**config)
    return fresh.eval().requires_grad_(False)


def _collect(
    predictions: dict[str, list[torch.Tensor]],
    labels: torch.Tensor,
    out: Any,
    classifier: torch.nn.Module,
    recon: torch.Tensor,
    images: torch.Tensor,
    independent: torch.nn.Module | None,
) -> None:
    """Append one batch's labels and predicted classes (f, g; with f': f and f' on x̃, f' on x).
    f on x̃ is only read beside f' (``_independent_scores``), so it is computed only then."""
    batch = {"label": labels, "f": out.f_logits.argmax(1), "g": out.g_logits.argmax(1)}
    if independent is not None:
        batch["f_recon"] = classifier(recon).argmax(1)
        batch["fi"] = independent(images).argmax(1)
        batch["fi_recon"] = independent(recon).argmax(1)
    for key, value in batch.items():
        predictions.setdefault(key, []).append(value.cpu())


def _prediction_nulls(predictions: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """What knowing nothing scores: ``accuracy`` of always answering the most frequent test class;
    ``fidelity``: the agreement of two independent predictions with f's and g's class
    frequencies, Σ_c P(f = c)·P(g = c)."""
    labels, f, g = (torch.cat(predictions[k]) for k in ("label", "f", "g"))
    classes = int(max(labels.max(), f.max(), g.max())) + 1
    freq = {k: torch.bincount(v, minlength=classes).double() / len(v) for k, v in
            (("label", labels), ("f", f), ("g", g))}  # fmt: skip
    return {
        "accuracy": float(freq["label"].max()),
        "fidelity": float((freq["f"] * freq["g"]).sum()),
    }


def _independent_scores(predictions: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """f' (an independently trained classifier) on the inputs and on the reconstructions.

    ``accuracy``: f' on x; ``agrees_with_f``: f'(x) = f(x), the ceiling for the next one;
    ``recon_agrees_with_f``: f'(x̃) = f(x) — how often an independent reader sees f's class in the
    reconstruction; ``recon_consistent``: f'(x̃) = f'(x); ``f_recon_agrees``: f(x̃) = f(x), f's own
    reading (measured during the pass over the test set, on the same images); ``fooling_gap``:
    f_recon_agrees − recon_agrees_with_f (large: x̃ is classified right by f but not by f').
    """
    p = {k: torch.cat(v) for k, v in predictions.items()}
    result = {
        "accuracy": (p["fi"] == p["label"]).double().mean().item(),
        "agrees_with_f": (p["fi"] == p["f"]).double().mean().item(),
        "recon_agrees_with_f": (p["fi_recon"] == p["f"]).double().mean().item(),
        "recon_consistent": (p["fi_recon"] == p["fi"]).double().mean().item(),
    }
    if "f_recon" in p:
        result["f_recon_agrees"] = (p["f_recon"] == p["f"]).double().mean().item()
        result["fooling_gap"] = result["f_recon_agrees"] - result["recon_agrees_with_f"]
    return result


def _subset(dataset: Dataset, max_images: int, seed: int) -> Dataset:
    if not max_images or max_images >= len(dataset):
        return dataset
    gen = torch.Generator().manual_seed(seed)
    return Subset(
        dataset, torch.randperm(len(dataset), generator=gen)[:max_images].sort().values.tolist()
    )


def _images(dataset: Dataset, n: int, seed: int, batch_size: int, device: torch.device):
    picked = _subset(dataset, n, seed)
    for images, _ in DataLoader(picked, batch_size=batch_size, shuffle=False):
        yield images.to(device)


def _faithfulness(
    model: Viscoin, dataset: Dataset, device: torch.device, opt: EvalOptions
) -> dict[str, float]:
    scores = faithfulness_scores(
        model,
        _images(dataset, opt.faithfulness_images, opt.seed + 1, opt.batch_size, device),
        opt.thresholds,
        seed=opt.seed,
        device=device,
        intervention=opt.intervention,
        independent=opt.independent,
        progress=opt.progress,
    )
    return summarise_faithfulness(scores, seed=opt.seed)


def _consistency(
    model: Viscoin, dataset: Dataset, concepts: list[int], device: torch.device, opt: EvalOptions
) -> dict[str, Any]:
    if not concepts or opt.consistency_images < 4:
        return {"consistency_concepts": 0}
    images = torch.cat(
        list(_images(dataset, opt.consistency_images, opt.seed + 2, opt.batch_size, device))
    )
    per_concept = concept_consistency(
        model,
        images,
        concepts,
        batch_size=opt.batch_size,
        seed=opt.seed,
        intervention=opt.intervention,
        shuffles=opt.consistency_shuffles,
        directions=opt.consistency_directions,
        multiplier=opt.consistency_multiplier,
        progress=opt.progress,
        # the probe on a concept Ω does not read, for the most active concept only (its images
        # are identical under the isolated intervention: a check that the probe sees k alone)
        unread_concepts=concepts[:1],
    )
    return {
        **summarise_consistency(per_concept),
        "per_concept": {str(k): v for k, v in per_concept.items()},
    }


def write_metrics(metrics: dict[str, Any], folder: str | Path) -> tuple[Path, Path]:
    """``metrics.json`` and a Markdown table ``metrics.md`` in ``folder`` (atomic writes)."""
    folder = Path(folder)
    json_path, md_path = folder / "metrics.json", folder / "metrics.md"
    atomic_write_text(json_path, json.dumps(metrics, indent=1, default=float))
    atomic_write_text(md_path, metrics_markdown(metrics))
    return json_path, md_path


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """The headline numbers as a Markdown table (nested sections flattened with '/')."""
    lines = ["| metric | value |", "| --- | --- |"]
    for key, value in _flatten(metrics):
        if "per_concept" in key or "/values/" in key or "/per_class/" in key:
            continue
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {text} |")
    return "\n".join(lines) + "\n"


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, name + "/"))
        elif isinstance(value, (int, float, str, bool)) and value is not None:
            rows.append((name, value))
    return rows


def headline(metrics: dict[str, Any]) -> str:
    """The headline numbers on one line, each with its null in parentheses."""
    nulls = metrics.get("nulls", {})
    parts = []
    for key in ("acc_f", "acc_g", "fidelity", "mse", "lpips", "fid"):
        if key in metrics:
            null = nulls.get("accuracy" if key.startswith("acc") else key)
            parts.append(f"{key} {metrics[key]:.4f}" + (f" (null {null:.3f})" if null else ""))
    ff = metrics.get("faithfulness", {})
    if "mean_ff_f@0.1" in ff:
        paired = ff["paired_f@0.1"]
        parts.append(
            f"FF@0.1 mean {ff['mean_ff_f@0.1']:.4f} vs {ff['mean_null_f@0.1']:.4f} removing as "
            f"many random active concepts (paired difference {paired['diff_mean']:.4f}, 95% CI "
            f"{paired['diff_ci_low']:.4f}..{paired['diff_ci_high']:.4f})"
        )
        if "mean_matched_f@0.1" in ff:
            matched = ff["paired_matched_f@0.1"]
            parts.append(
                f"vs {ff['mean_matched_f@0.1']:.4f} removing as many concepts of matched "
                f"activation (paired difference {matched['diff_mean']:.4f}, 95% CI "
                f"{matched['diff_ci_low']:.4f}..{matched['diff_ci_high']:.4f})"
            )
    independent = metrics.get("independent", {})
    if "recon_agrees_with_f" in independent:
        parts.append(
            f"f' agrees with f on reconstructions {independent['recon_agrees_with_f']:.3f} "
            f"(f itself {independent.get('f_recon_agrees', float('nan')):.3f}, "
            f"f' on inputs {independent['agrees_with_f']:.3f})"
        )
    shown = metrics.get("recon_attributes", {})
    if "all_class_defining" in shown:
        worst = shown["worst_class"]["all_class_defining"]
        null = max(b["all_class_defining"] for b in shown["baselines"].values())
        parts.append(
            f"reconstructions show the class-defining attributes {shown['all_class_defining']:.3f}"
            f" (best null {null:.3f}; worst class {worst['class']} {worst['accuracy']:.3f})"
        )
    cons = metrics.get("consistency", {})
    if cons.get("consistency_concepts"):
        text = f"consistency {cons['consistency_mean']:.3f} ± {cons['consistency_std']:.3f}"
        if "null_mean" in cons:
            text += f" (shuffled-label null {cons['null_mean']:.3f}"
            if "direction_mean" in cons:
                text += f"; a random direction of the same strength {cons['direction_mean']:.3f}"
            text += ")"
        parts.append(text)
    return ", ".join(parts)
