"""The concept atlas (``viscoin report RUN``): one self-contained HTML page per run.

The page opens on the concepts: a grid of cards (``<article class="concept-card"
id="concept-<k>">``, most important first), each with a λ slider over precomputed amplifications
of its most activating image, its top images, Grad-CAM heatmaps and the classes it matters for; a
class filter above the grid; beside it the headline metrics, each with its null
(:mod:`viscoin.report.headline`), and the model and data; below, collapsed, every number of
``metrics.json``, the analytics figures and the training curves.

The HTML comes from the Jinja2 templates in ``report/templates/`` (autoescaped). Everything is
inline — images as base64 PNG data URIs, CSS in a ``<style>`` block, one inline script for the
slider, filter and lightbox, no external resource — so the file can be mailed, archived or opened
offline.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import torch

from viscoin.interpret.amplify import ConceptStrip, concept_strips
from viscoin.interpret.analytics import ConceptAnalytics
from viscoin.interpret.heatmaps import concept_heatmaps, overlay_heatmap
from viscoin.models.viscoin import Viscoin
from viscoin.report.headline import NullRow, format_number, headline_rows
from viscoin.report.logs import GROUPS, grouped_curves, last_record, metric_curves
from viscoin.report.plots import analytics_figures, training_curves_figure
from viscoin.utils.figures import data_uri, figure_png, image_array, png_bytes, short_label
from viscoin.utils.io import atomic_write_text

MAX_METRIC_ROWS = 200
# The slider's steps: removal (0), the reconstruction (1) and amplifications; large λ drives Ω far
# from its training inputs under the isolated intervention (docs/metrics.md), so read them with care.
ATLAS_MULTIPLIERS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
# A concept is listed for a class when the class is among its FILTER_TOP_CLASSES best supported
# ones, or it is among the class's FILTER_TOP_CONCEPTS best supporting concepts.
FILTER_TOP_CLASSES = 5
FILTER_TOP_CONCEPTS = 3
FIGURE_CAPTIONS = {
    "concept-activation": "Mean activation a_k of each concept over the images; dead concepts "
    "(never active) are marked in red.",
    "activation-profile": "Each image's concept activations sorted in decreasing order: a steep "
    "curve means an image is explained by few concepts.",
    "concept-entropy": "Entropy of each concept's distribution over classes: low means the concept "
    "matters for few classes.",
    "class-concept": "Mean relevance r_{k,c} of concept k over the images predicted as class c.",
    "concept-class": "For each alive concept (most important first), how its importance is shared "
    "among classes.",
}


@dataclass
class Tile:
    """One image of the page: PNG bytes, caption lines and the alt text."""

    png: bytes
    caption: list[str] = field(default_factory=list)
    alt: str = ""


@dataclass
class ConceptCard:
    """What one concept's card shows.

    ``frames[m]``: the most activating image regenerated with φ_k × ``multipliers[m]``; ``start``:
    the frame the slider starts on (the reconstruction, λ = 1, when present); ``filter_classes``:
    the class names the class filter matches this card by.
    """

    concept: int
    rank: int
    stats: list[tuple[str, str]]
    top_images: list[Tile]
    input: Tile
    frames: list[Tile]
    multipliers: list[float]
    start: int
    heatmaps: list[Tile]
    classes: list[tuple[str, float, float]]  # (name, r_{k,c}, share of the concept's importance)
    filter_classes: list[str]
    rank_text: str = ""  # in place of "#rank by importance"
    top_title: str = "Most activating images"
    no_classes: str = "supports no class on this split"


@dataclass
class MetricTable:
    """One table of the collapsed "All metrics" section: (key, number) rows, at most
    :data:`MAX_METRIC_ROWS` of them, and how many were left out."""

    name: str
    rows: list[tuple[str, float]]
    more: int = 0


def _class_name(classes: Sequence[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else f"class {index}"


@torch.no_grad()
def _dataset_images(dataset: Any, indices: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
    items = [dataset[i] for i in indices]
    return torch.stack([item[0] for item in items]), [int(item[1]) for item in items]


def filter_classes(analytics: ConceptAnalytics, concept: int) -> list[str]:
    """The classes concept k is listed under by the atlas's class filter: its
    :data:`FILTER_TOP_CLASSES` best supported classes (r_{k,c} > 0), then every class for which k
    is among the :data:`FILTER_TOP_CONCEPTS` alive concepts of highest r_{k,c} > 0."""
    classes = analytics.classes
    listed = [c for c, _ in analytics.top_classes(concept, FILTER_TOP_CLASSES)]
    alive = analytics.alive
    for c, row in enumerate(np.asarray(analytics.class_concept)):
        values = row[alive]
        best = alive[np.argsort(-values, kind="stable")[:FILTER_TOP_CONCEPTS]]
        if c not in listed and concept in best and row[concept] > 0:
            listed.append(c)
    return [_class_name(classes, c) for c in listed]


def _start_frame(multipliers: Sequence[float]) -> int:
    """The reconstruction (λ = 1) if the slider has it, else the λ nearest to it."""
    return min(range(len(multipliers)), key=lambda m: abs(multipliers[m] - 1.0))


def lambda_frames(
    model: Viscoin,
    image: torch.Tensor,
    concept: int,
    classes: Sequence[str],
    multipliers: Sequence[float] = ATLAS_MULTIPLIERS,
    name: str = "the image",
) -> tuple[list[Tile], ConceptStrip]:
    """``image`` (1, 3, R, R) regenerated with φ_k × λ for each λ of ``multipliers``, one
    :class:`Tile` per λ captioned with f's and g's predictions on it, and the strip they come
    from (:func:`viscoin.interpret.amplify.concept_strips`)."""
    strip = concept_strips(model, image, [[concept]], multipliers)[0]
    p = strip.predictions
    frames = []
    for m, lam in enumerate(strip.multipliers):
        note = {0.0: " (removed)", 1.0: " (reconstruction)"}.get(lam, "")
        frames.append(
            Tile(
                png_bytes(image_array(strip.generated[0, m])),
                [
                    f"λ = {lam:g}{note}",
                    f"f: {short_label(_class_name(classes, int(p.f_class[0, m])), 22)} "
                    f"{float(p.f_prob[0, m]):.2f}",
                    f"g: {short_label(_class_name(classes, int(p.g_class[0, m])), 22)} "
                    f"{float(p.g_prob[0, m]):.2f}",
                ],
                f"{name} with concept {concept} × {lam:g}",
            )
        )
    return frames, strip


def heatmap_tiles(
    model: Viscoin, images: torch.Tensor, concept: int, captions: Sequence[str]
) -> list[Tile]:
    """Grad-CAM of a_k over ``images`` (B, 3, R, R), overlaid on each; ``captions``: B labels."""
    heat = concept_heatmaps(model, images, [concept])[:, 0]
    return [
        Tile(png_bytes(overlay_heatmap(image, h)), [caption], f"heatmap of concept {concept}")
        for image, h, caption in zip(images, heat, captions, strict=True)
    ]


def concept_card(
    model: Viscoin,
    dataset: Any,
    analytics: ConceptAnalytics,
    concept: int,
    rank: int,
    n_images: int = 6,
    multipliers: Sequence[float] = ATLAS_MULTIPLIERS,
) -> ConceptCard:
    """Top-activating images, the amplifications of the most activating one for every λ, heatmaps
    on the top images and the classes the concept matters for."""
    classes = analytics.classes
    top = analytics.top_images(concept, n_images)
    images, labels = _dataset_images(dataset, [i for i, _ in top])
    tiles = [
        Tile(
            png_bytes(image_array(image)),
            [f"#{index}  a = {activation:.3g}", short_label(_class_name(classes, label), 22)],
            f"image {index}, a top image of concept {concept}",
        )
        for image, (index, activation), label in zip(images, top, labels, strict=True)
    ]
    heat_tiles = heatmap_tiles(model, images, concept, [f"#{index}" for index, _ in top])
    first = top[0][0]
    frames, strip = lambda_frames(
        model, images[:1], concept, classes, multipliers, name=f"image {first}"
    )
    share = analytics.concept_class[concept]
    entropy = analytics.class_entropy[concept]
    stats = [
        ("importance", format_number(float(analytics.importance[concept]))),
        ("mean activation", format_number(float(analytics.mean_activation[concept]))),
        (
            "class entropy",
            "–" if math.isnan(entropy) else f"{entropy:.2f} / {analytics.max_entropy:.2f} nats",
        ),
    ]
    return ConceptCard(
        concept=concept,
        rank=rank,
        stats=stats,
        top_images=tiles,
        input=Tile(
            png_bytes(image_array(strip.image)),
            [f"input #{first}", short_label(_class_name(classes, labels[0]), 22)],
            f"image {first}, the input of the amplifications",
        ),
        frames=frames,
        multipliers=list(strip.multipliers),
        start=_start_frame(strip.multipliers),
        heatmaps=heat_tiles,
        classes=[
            (_class_name(classes, c), value, float(share[c]))
            for c, value in analytics.top_classes(concept, 5)
        ],
        filter_classes=filter_classes(analytics, concept),
    )


@torch.no_grad()
def image_concept_card(
    model: Viscoin,
    image: torch.Tensor,
    concept: int,
    name: str = "this image",
    multipliers: Sequence[float] = ATLAS_MULTIPLIERS,
) -> ConceptCard:
    """A concept's card on one image (1, 3, R, R) in [−1, 1], for when no split was analysed:
    the image itself in place of the top images, the heatmap on it, its amplifications and its
    relevance r_k and activation a_k; no class statistics (they need a split)."""
    classes = model.class_names
    out = model(image)
    relevance = model.relevance(out)[0]
    activation = float(out.activations[0, concept])
    order = relevance.argsort(descending=True, stable=True).tolist()
    frames, strip = lambda_frames(model, image, concept, classes, multipliers, name=name)
    g_name = short_label(classes[int(out.g_logits[0].argmax())], 22)
    tile = Tile(
        png_bytes(image_array(image[0])),
        [name, f"a = {activation:.3g}"],
        f"{name}, the input of the amplifications",
    )
    return ConceptCard(
        concept=concept,
        rank=order.index(concept) + 1,
        stats=[
            (f"relevance for {g_name}", f"{float(relevance[concept]):.2f}"),
            ("activation", format_number(activation)),
        ],
        top_images=[tile],
        input=tile,
        frames=frames,
        multipliers=list(strip.multipliers),
        start=_start_frame(strip.multipliers),
        heatmaps=heatmap_tiles(model, image, concept, [name]),
        classes=[],
        filter_classes=[],
        rank_text=f"#{order.index(concept) + 1} by relevance on {name}",
        top_title=name[:1].upper() + name[1:],
        no_classes="the classes a concept supports are measured over a dataset split",
    )


def flatten_numbers(values: Any, prefix: str = "") -> dict[str, float]:
    """Numbers in a nested dict/list as ``{"a.b[0]": value}``; anything else is left out."""
    out: dict[str, float] = {}
    if isinstance(values, Mapping):
        for key, value in values.items():
            out.update(flatten_numbers(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(values, (list, tuple)):
        for i, value in enumerate(values):
            out.update(flatten_numbers(value, f"{prefix}[{i}]"))
    elif isinstance(values, (int, float)) and not isinstance(values, bool):
        out[prefix or "value"] = values
    return out


# -- HTML -------------------------------------------------------------------------------------


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates of ``report/templates/``, autoescaped whatever their extension."""
    return template_environment()


def template_environment(loader: jinja2.BaseLoader | None = None) -> jinja2.Environment:
    """A Jinja2 environment with the report's settings (autoescaped whatever the extension,
    undefined names an error) and filters (``data_uri``, ``num``, ``lam``), reading ``loader``
    (default: ``report/templates/``)."""
    env = jinja2.Environment(
        loader=loader or jinja2.PackageLoader("viscoin.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["data_uri"] = data_uri
    env.filters["num"] = format_number
    env.filters["lam"] = lambda value: f"{value:g}"
    return env


def _figure(name: str, png: bytes, caption: str) -> dict[str, Any]:
    """A 150-dpi figure shown at its designed size (1.5 image pixels per CSS pixel)."""
    width = int.from_bytes(png[16:20], "big")  # the PNG IHDR chunk starts with the width
    return {"name": name, "uri": data_uri(png), "caption": caption, "width": round(width / 1.5)}


def metric_table(name: str, values: Mapping[str, float]) -> MetricTable:
    """A :class:`MetricTable` of the first :data:`MAX_METRIC_ROWS` numbers of ``values``."""
    items = list(values.items())
    return MetricTable(name, items[:MAX_METRIC_ROWS], max(0, len(items) - MAX_METRIC_ROWS))


def render_report(
    title: str,
    subtitle: str,
    overview: Sequence[tuple[str, str]],
    headline: Sequence[NullRow],
    headline_source: str,
    metric_tables: Sequence[MetricTable],
    figures: Sequence[tuple[str, bytes, str]],
    curves: Sequence[tuple[str, bytes]],
    cards: Sequence[ConceptCard],
    classes: Sequence[str],
    pixelated: bool = False,
) -> str:
    """The page as a string. ``figures``: (name, png, caption); ``curves``: (title, png);
    ``classes``: every class name (the filter's suggestions)."""
    from viscoin import __version__

    return (
        _environment()
        .get_template("atlas.html.j2")
        .render(
            title=title,
            subtitle=subtitle,
            overview=list(overview),
            headline=list(headline),
            headline_source=headline_source,
            metric_tables=list(metric_tables),
            figures=[_figure(*figure) for figure in figures],
            curves=[_figure(name, png, name) for name, png in curves],
            cards=list(cards),
            classes=list(classes),
            pixelated=pixelated,
            version=__version__,
            generated=time.strftime("%Y-%m-%d %H:%M"),
        )
    )


def model_overview(model: Viscoin, analytics: ConceptAnalytics) -> list[tuple[str, str]]:
    """Rows describing the ensemble and what the analytics saw."""
    generator = model.generator
    classifier = model.classifier
    dead = int(analytics.dead.sum())
    return [
        (
            "classifier f",
            f"{getattr(classifier, 'arch', None) or type(getattr(classifier, 'backbone', classifier)).__name__}",
        ),
        ("classes", f"{analytics.n_classes}"),
        ("concepts K", f"{model.n_concepts} ({model.n_concepts - dead} alive, {dead} dead)"),
        (
            "generator G",
            f"{getattr(generator, 'img_resolution', '?')} px, "
            f"W+ {getattr(generator, 'num_ws', '?')} × {getattr(generator, 'w_dim', '?')}",
        ),
        ("images analysed", f"{analytics.n_images}"),
        (
            "accuracy of g / fidelity",
            f"{(analytics.predicted == analytics.labels).mean():.3f} / "
            f"{(analytics.predicted == analytics.f_predicted).mean():.3f}"
            if analytics.n_images
            else "–",
        ),
    ]


def metric_tables(
    metrics: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]] | None
) -> list[MetricTable]:
    """The "All metrics" tables: the numbers of ``metrics.json`` (one table for the top-level ones,
    one per section; per-concept and per-value details stay in the file), the reconstructions'
    class-defining attributes per class (one compact table) and the last test log record."""
    tables = []
    if isinstance(metrics, Mapping) and metrics:
        sections: dict[str, dict[str, float]] = {}
        for key, value in flatten_numbers(metrics).items():
            if ".per_concept." in key or ".values." in key or ".per_class." in key:
                continue
            section = key.split(".", 1)[0] if "." in key else ""
            sections.setdefault(section, {})[key] = value
        tables.append(metric_table("evaluation (metrics.json)", sections.pop("", {})))
        tables.extend(metric_table(name, values) for name, values in sections.items())
        shown = metrics.get("recon_attributes")
        per_class = shown.get("per_class") if isinstance(shown, Mapping) else None
        if (
            isinstance(per_class, Mapping)
            and per_class
            and all(
                isinstance(v, Mapping) and "all_class_defining" in v for v in per_class.values()
            )
        ):
            tables.append(
                metric_table(
                    "reconstructions showing every class-defining attribute, per class",
                    {name: values["all_class_defining"] for name, values in per_class.items()},
                )
            )
    last = last_record(records, "test") if records else None
    if last:
        tables.append(metric_table(f"last test log (step {last.pop('step', '?')})", last))
    return tables


def build_report(
    model: Viscoin,
    dataset: Any,
    analytics: ConceptAnalytics,
    out_path: str | Path,
    title: str = "VisCoIN concept atlas",
    info: Sequence[tuple[str, str]] = (),
    metrics: Mapping[str, Any] | None = None,
    records: Sequence[Mapping[str, Any]] | None = None,
    max_concepts: int = 16,
    n_images: int = 6,
    multipliers: Sequence[float] = ATLAS_MULTIPLIERS,
    progress: bool = False,
) -> Path:
    """Write the atlas to ``out_path``.

    ``dataset[i]`` must give ``(image (3, R, R) in [−1, 1], label)`` for the indices the analytics
    saw; ``info``: extra overview rows (run, model file, data); ``metrics``: the contents of
    ``metrics.json`` (any nested dict of numbers); ``records``: the run's metrics.jsonl records
    (training curves and the last test metrics); ``multipliers``: the λ steps of each card's slider.
    """
    from tqdm import tqdm

    concepts = analytics.ordered_concepts(max_concepts)
    cards = [
        concept_card(model, dataset, analytics, k, rank, n_images, multipliers)
        for rank, k in enumerate(tqdm(concepts, desc="concept cards", disable=not progress), 1)
    ]
    figures = [
        (name, figure_png(fig), FIGURE_CAPTIONS.get(name, ""))
        for name, fig in analytics_figures(analytics).items()
    ]
    tables = metric_tables(metrics, records)
    curves: list[tuple[str, bytes]] = []
    if records:
        for group, members in grouped_curves(metric_curves(records)).items():
            fig = training_curves_figure(members, GROUPS[group], smooth=group == "losses")
            curves.append((GROUPS[group], figure_png(fig)))
    headline, source = headline_rows(metrics, analytics)
    resolution = int(getattr(model.generator, "img_resolution", 256))
    page = render_report(
        title=title,
        subtitle=" · ".join(v for _, v in info[:2]) if info else "",
        overview=[*info, *model_overview(model, analytics)],
        headline=headline,
        headline_source=source,
        metric_tables=tables,
        figures=figures,
        curves=curves,
        cards=cards,
        classes=list(analytics.classes),
        pixelated=resolution < 256,  # the slider shows images at 256 CSS pixels
    )
    out_path = Path(out_path)
    atomic_write_text(out_path, page)
    return out_path


def write_run_report(
    target: Any,
    model: Viscoin,
    data: Any,
    split: str = "test",
    max_concepts: int = 16,
    images: int = 6,
    force: bool = False,
    batch_size: int | None = None,
    max_images: int | None = None,
    progress: bool = False,
    multipliers: Sequence[float] = ATLAS_MULTIPLIERS,
) -> tuple[Path, ConceptAnalytics]:
    """The concept atlas of a resolved run or bundle (:class:`viscoin.interpret.target.Target`):
    analytics (cached), the run's ``metrics.json`` and training log, written to
    ``<out>/report.html``. Returns the page's path and the analytics it used."""
    import json

    from viscoin.interpret.target import target_analytics
    from viscoin.models.viscoin import file_sha256
    from viscoin.utils.runs import read_metrics

    analytics, _ = target_analytics(
        target, model, data, split, batch_size, max_images, force, progress=progress
    )
    metrics = records = None
    if target.run is not None:
        metrics_file = target.run.path / "metrics.json"
        if metrics_file.is_file():
            try:
                metrics = json.loads(metrics_file.read_text())
            except json.JSONDecodeError:
                warnings.warn(
                    f"{metrics_file} is not valid JSON; left out of the report", stacklevel=2
                )
        if target.run.metrics.is_file():
            records = read_metrics(target.run.metrics)
    data_cfg = target.cfg.data
    info = [
        ("run", str(target.run.path if target.run else target.model_file)),
        ("dataset", f"{data_cfg.name} · {split} split · {data_cfg.resolution} px"),
        ("model file", f"{target.model_file} (SHA-256 {file_sha256(target.model_file)[:12]}…)"),
    ]
    path = build_report(
        model,
        data,
        analytics,
        target.out_dir / "report.html",
        title=f"VisCoIN concept atlas — {target.name}",
        info=info,
        metrics=metrics,
        records=records,
        max_concepts=max_concepts,
        n_images=images,
        multipliers=multipliers,
        progress=progress,
    )
    return path, analytics
