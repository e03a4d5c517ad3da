"""The concept atlas (``viscoin report RUN``): one self-contained HTML page per run.

Everything is inline — images as base64 PNG data URIs, CSS in a ``<style>`` block, no script and
no external resource — so the file can be mailed, archived or opened offline. The page holds an
overview (model, data, metrics), the analytics figures and training curves, then one card per alive
concept (``<article class="concept-card" id="concept-<k>">``), most important first.
"""

from __future__ import annotations

import base64
import html
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from viscoin.interpret.amplify import DEFAULT_MULTIPLIERS, concept_strips
from viscoin.interpret.analytics import ConceptAnalytics
from viscoin.interpret.heatmaps import concept_heatmaps, overlay_heatmap
from viscoin.models.viscoin import Viscoin
from viscoin.report.logs import GROUPS, grouped_curves, last_record, metric_curves
from viscoin.report.plots import analytics_figures, training_curves_figure
from viscoin.utils.figures import figure_png, image_array, png_bytes, short_label
from viscoin.utils.io import atomic_write_text

MAX_METRIC_ROWS = 200
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
    """One image of the page with its caption (lines)."""

    png: bytes
    caption: list[str] = field(default_factory=list)


@dataclass
class ConceptCard:
    """What one concept's card shows."""

    concept: int
    rank: int
    stats: list[tuple[str, str]]
    top_images: list[Tile]
    strip: list[Tile]
    heatmaps: list[Tile]
    classes: list[tuple[str, float, float]]  # (name, r_{k,c}, share of the concept's importance)


def _class_name(classes: Sequence[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else f"class {index}"


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


@torch.no_grad()
def _dataset_images(dataset: Any, indices: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
    items = [dataset[i] for i in indices]
    return torch.stack([item[0] for item in items]), [int(item[1]) for item in items]


def concept_card(
    model: Viscoin,
    dataset: Any,
    analytics: ConceptAnalytics,
    concept: int,
    rank: int,
    n_images: int = 6,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
) -> ConceptCard:
    """Top-activating images, an amplification strip on the most activating one, heatmaps on the
    top images and the classes the concept matters for."""
    classes = analytics.classes
    top = analytics.top_images(concept, n_images)
    images, labels = _dataset_images(dataset, [i for i, _ in top])
    tiles = [
        Tile(
            png_bytes(image_array(image)),
            [f"#{index}  a = {activation:.3g}", short_label(_class_name(classes, label), 22)],
        )
        for image, (index, activation), label in zip(images, top, labels, strict=True)
    ]
    heat = concept_heatmaps(model, images, [concept])[:, 0]
    heat_tiles = [
        Tile(png_bytes(overlay_heatmap(image, h)), [f"#{index}"])
        for image, h, (index, _) in zip(images, heat, top, strict=True)
    ]
    strip = concept_strips(model, images[:1], [[concept]], multipliers, indices=[top[0][0]])[0]
    p = strip.predictions
    strip_tiles = [Tile(png_bytes(image_array(strip.image)), [f"input #{top[0][0]}"])]
    for m, lam in enumerate(strip.multipliers):
        note = {0.0: " (removed)", 1.0: " (reconstruction)"}.get(lam, "")
        strip_tiles.append(
            Tile(
                png_bytes(image_array(strip.generated[0, m])),
                [
                    f"λ = {lam:g}{note}",
                    f"f: {short_label(_class_name(classes, int(p.f_class[0, m])), 12)} "
                    f"{float(p.f_prob[0, m]):.2f}",
                    f"g: {short_label(_class_name(classes, int(p.g_class[0, m])), 12)} "
                    f"{float(p.g_prob[0, m]):.2f}",
                ],
            )
        )
    share = analytics.concept_class[concept]
    entropy = analytics.class_entropy[concept]
    stats = [
        ("importance", _fmt(float(analytics.importance[concept]))),
        ("mean activation", _fmt(float(analytics.mean_activation[concept]))),
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
        strip=strip_tiles,
        heatmaps=heat_tiles,
        classes=[
            (_class_name(classes, c), value, float(share[c]))
            for c, value in analytics.top_classes(concept, 5)
        ],
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

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde2ea; --card: #ffffff; --bg: #f4f6f9;
        --accent: #2c6fbb; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background: var(--ink); color: #fff; padding: 28px 40px 22px; }
header h1 { margin: 0 0 4px; font-size: 26px; font-weight: 600; }
header p { margin: 0; color: #c5cbd6; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 40px 48px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 17px; margin: 0; }
h4 { font-size: 14px; font-weight: 600; color: var(--muted); margin: 16px 0 6px; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 20px; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px;
         min-width: 0; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; width: 45%; overflow-wrap: anywhere; }
td.num { font-variant-numeric: tabular-nums; text-align: right; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 18px; }
.figures figure { margin: 0; background: var(--card); border: 1px solid var(--line);
                  border-radius: 8px; padding: 10px; }
.figures img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; }
nav.toc { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 16px; }
nav.toc a { text-decoration: none; color: var(--accent); border: 1px solid var(--line);
            background: var(--card); border-radius: 14px; padding: 2px 10px; font-size: 13px; }
.concept-card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
                padding: 18px 22px; margin: 0 0 22px; box-shadow: 0 1px 3px rgba(20, 30, 50, .06); }
.card-head { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; }
.rank { color: var(--muted); font-size: 14px; }
.stats { display: flex; gap: 8px; flex-wrap: wrap; margin-left: auto; }
.stat { background: var(--bg); border-radius: 12px; padding: 2px 10px; font-size: 13px; }
.stat b { font-weight: 600; }
.card-body { display: grid; grid-template-columns: minmax(0, 3fr) minmax(220px, 1fr); gap: 8px 28px; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; }
.tile { margin: 0; width: 112px; }
.tile img { width: 112px; height: 112px; display: block; border-radius: 4px; background: #000; }
.tile figcaption { font-size: 11px; line-height: 1.3; margin-top: 3px; color: var(--muted);
                   overflow-wrap: anywhere; }
.pixelated img { image-rendering: pixelated; }
.classes td.bar { width: 40%; }
.classes th { width: auto; }
.bar span { display: block; height: 10px; background: var(--accent); border-radius: 5px; }
.empty { color: var(--muted); font-style: italic; }
footer { text-align: center; color: var(--muted); font-size: 13px; padding: 20px; }
@media (max-width: 800px) { .card-body { grid-template-columns: 1fr; } main { padding: 8px 16px; } }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_img(png: bytes, alt: str) -> str:
    """An <img> of a 150-dpi figure shown at its designed size (1.5 image pixels per CSS pixel)."""
    width = int.from_bytes(png[16:20], "big")  # the PNG IHDR chunk starts with the width
    return f'<img src="{_data_uri(png)}" alt="{html.escape(alt)}" width="{round(width / 1.5)}">'


def _kv_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def _metrics_table(values: Mapping[str, float]) -> str:
    if not values:
        return '<p class="empty">none</p>'
    items = list(values.items())
    rows = "".join(
        f'<tr><th>{html.escape(k)}</th><td class="num">{html.escape(_fmt(v))}</td></tr>'
        for k, v in items[:MAX_METRIC_ROWS]
    )
    more = len(items) - MAX_METRIC_ROWS
    extra = f'<p class="empty">… and {more} more</p>' if more > 0 else ""
    return f"<table>{rows}</table>{extra}"


def _tiles(tiles: Sequence[Tile], alt: str) -> str:
    parts = []
    for tile in tiles:
        caption = "<br>".join(html.escape(line) for line in tile.caption)
        parts.append(
            f'<figure class="tile"><img src="{_data_uri(tile.png)}" alt="{html.escape(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return '<div class="tiles">' + "".join(parts) + "</div>"


def _card_html(card: ConceptCard) -> str:
    k = card.concept
    stats = "".join(
        f'<span class="stat">{html.escape(name)} <b>{html.escape(value)}</b></span>'
        for name, value in card.stats
    )
    if card.classes:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            f'<td class="num">{value:.3f}</td>'
            f'<td class="bar"><span style="width:{100 * share:.0f}%"></span></td></tr>'
            for name, value, share in card.classes
        )
        classes = (
            '<table class="classes"><tr><th>class</th><th>r<sub>k,c</sub></th>'
            f"<th>share</th></tr>{rows}</table>"
        )
    else:
        classes = '<p class="empty">supports no class on this split</p>'
    return f"""
<article class="concept-card" id="concept-{k}">
  <div class="card-head"><h3>Concept {k}</h3><span class="rank">#{card.rank} by importance</span>
    <div class="stats">{stats}</div></div>
  <div class="card-body">
    <div>
      <h4>Most activating images</h4>{_tiles(card.top_images, f"top image of concept {k}")}
      <h4>Amplification (φ<sub>{k}</sub> × λ, Φ′ fixed)</h4>{_tiles(card.strip, f"concept {k} amplified")}
      <h4>Where it lives (Grad-CAM of a<sub>{k}</sub>; red = strongest)</h4>{_tiles(card.heatmaps, f"heatmap of concept {k}")}
    </div>
    <div><h4>Classes it matters for</h4>{classes}</div>
  </div>
</article>"""


def render_report(
    title: str,
    subtitle: str,
    overview: Sequence[tuple[str, str]],
    metric_tables: Mapping[str, Mapping[str, float]],
    figures: Sequence[tuple[str, bytes, str]],
    curves: Sequence[tuple[str, bytes]],
    cards: Sequence[ConceptCard],
    pixelated: bool = False,
) -> str:
    """The page as a string. ``figures``: (name, png, caption); ``curves``: (title, png)."""
    from viscoin import __version__

    metric_panels = "".join(
        f'<div class="panel"><h4>{html.escape(name)}</h4>{_metrics_table(values)}</div>'
        for name, values in metric_tables.items()
    )
    figure_html = "".join(
        f"<figure>{_figure_img(png, name)}<figcaption>{html.escape(caption)}</figcaption></figure>"
        for name, png, caption in figures
    )
    curve_html = "".join(
        f"<figure>{_figure_img(png, name)}<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in curves
    )
    toc = "".join(f'<a href="#concept-{c.concept}">{c.concept}</a>' for c in cards)
    cards_html = "".join(_card_html(card) for card in cards) or (
        '<p class="empty">no alive concept to show</p>'
    )
    training = (
        f'<section id="training"><h2>Training curves</h2><div class="figures">{curve_html}</div></section>'
        if curves
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>
<main class="{"pixelated" if pixelated else ""}">
<section id="overview"><h2>Overview</h2>
<div class="columns"><div class="panel"><h4>Model and data</h4>{_kv_table(overview)}</div>{metric_panels}</div>
</section>
<section id="analytics"><h2>Concept analytics</h2><div class="figures">{figure_html}</div></section>
{training}
<section id="concepts"><h2>Concepts</h2>
<p>Alive concepts, most important first (importance: mean over images of max(r<sub>k</sub>(x), 0)).</p>
<nav class="toc">{toc}</nav>
{cards_html}
</section>
</main>
<footer>Generated by viscoin {html.escape(__version__)} on {time.strftime("%Y-%m-%d %H:%M")}</footer>
</body>
</html>
"""


def model_overview(model: Viscoin, analytics: ConceptAnalytics) -> list[tuple[str, str]]:
    """Rows describing the ensemble and what the analytics saw."""
    generator = model.generator
    classifier = model.classifier
    dead = int(analytics.dead.sum())
    return [
        ("classifier f", f"{getattr(classifier, 'arch', type(classifier).__name__)}"),
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
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    progress: bool = False,
) -> Path:
    """Write the atlas to ``out_path``.

    ``dataset[i]`` must give ``(image (3, R, R) in [−1, 1], label)`` for the indices the analytics
    saw; ``info``: extra overview rows (run, model file, data); ``metrics``: the contents of
    ``metrics.json`` (any nested dict of numbers); ``records``: the run's metrics.jsonl records
    (training curves and the last test metrics).
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
    tables: dict[str, dict[str, float]] = {}
    if metrics:
        tables["evaluation (metrics.json)"] = {
            # the headline numbers; per-concept and per-value details stay in metrics.json
            k: v
            for k, v in flatten_numbers(metrics).items()
            if ".per_concept." not in k and ".values." not in k and ".per_class." not in k
        }
        per_class = metrics.get("recon_attributes", {}).get("per_class", {})
        if per_class and all("all_class_defining" in v for v in per_class.values()):
            tables["reconstructions showing every class-defining attribute, per class"] = {
                name: values["all_class_defining"] for name, values in per_class.items()
            }
    curves: list[tuple[str, bytes]] = []
    if records:
        last = last_record(records, "test")
        if last:
            tables[f"last test log (step {last.pop('step', '?')})"] = last
        for group, members in grouped_curves(metric_curves(records)).items():
            fig = training_curves_figure(members, GROUPS[group], smooth=group == "losses")
            curves.append((GROUPS[group], figure_png(fig)))
    resolution = int(getattr(model.generator, "img_resolution", 256))
    page = render_report(
        title=title,
        subtitle=" · ".join(v for _, v in info[:2]) if info else "",
        overview=[*info, *model_overview(model, analytics)],
        metric_tables=tables,
        figures=figures,
        curves=curves,
        cards=cards,
        pixelated=resolution < 112,
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
        progress=progress,
    )
    return path, analytics
