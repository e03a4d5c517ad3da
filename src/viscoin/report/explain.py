"""``viscoin explain``: explain the user's own image files with a trained ensemble.

For each image: the predictions of f and g, its most relevant concepts, its reconstruction and the
amplification strip of those concepts (:mod:`viscoin.interpret.amplify`), written as PNGs, plus one
self-contained page ``explain.html`` (images as data URIs, template ``explain.html.j2``). Nothing
here needs a dataset: the class names come from the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from viscoin.errors import UserError
from viscoin.interpret.amplify import concept_strips, strip_figure
from viscoin.models.inputs import read_image_file
from viscoin.models.viscoin import Explanation, Viscoin
from viscoin.report.html import _environment
from viscoin.utils.figures import figure_png, image_array, png_bytes
from viscoin.utils.io import atomic_write_bytes, atomic_write_text

DEFAULT_MULTIPLIERS = (0.0, 1.0, 2.0)
PAGE = "explain.html"


@dataclass
class ExplainedImage:
    """One explained file and what was written for it. ``concepts``: (concept, relevance,
    activation), most relevant first."""

    source: Path
    f_name: str
    f_prob: float
    g_name: str
    g_prob: float
    concepts: list[tuple[int, float, float]]
    reconstruction: Path
    strip: Path
    input_png: bytes
    reconstruction_png: bytes
    strip_png: bytes


def read_image_files(paths: Sequence[str | Path]) -> list[torch.Tensor]:
    """Decode each file → uint8 (3, H, W); a :class:`UserError` names the first that is missing or
    is not an image. Cheap enough to run before the model loads."""
    if not paths:
        raise UserError("no image file given: viscoin explain RUN a.jpg b.png ...")
    return [read_image_file(path) for path in paths]


def output_stems(files: Sequence[Path]) -> list[str]:
    """A distinct file-name stem per image: ``bird`` for ``bird.jpg``, ``bird-png`` beside it for
    ``bird.png``, ``bird-2`` for a second ``bird.jpg`` from another folder."""
    stems: list[str] = []
    counts = {}
    for path in files:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    for path in files:
        stem = path.stem if counts[path.stem] == 1 else f"{path.stem}-{path.suffix.lstrip('.')}"
        base, n = stem, 1
        while stem in stems:
            n += 1
            stem = f"{base}-{n}"
        stems.append(stem)
    return stems


def explain_files(
    model: Viscoin,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    top_k: int = 3,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    model_name: str = "",
    pixels: Sequence[torch.Tensor] | None = None,
) -> tuple[list[ExplainedImage], Path]:
    """Explain each image file: writes ``out_dir/<stem>-reconstruction.png``,
    ``out_dir/<stem>-amplify.png`` (its top-``top_k`` concepts, one row each, one column per λ of
    ``multipliers``) and ``out_dir/explain.html``. ``pixels``: the files already decoded by
    :func:`read_image_files`. → (the explained images, the page's path)."""
    files = [Path(p) for p in paths]
    if pixels is None:
        pixels = read_image_files(files)
    out_dir = Path(out_dir)
    # uint8 pixels go through the same test transform as the files would (Viscoin.prepare)
    explanation = model.explain(list(pixels), top_k=top_k)
    selected = explanation.top_concepts.tolist()
    strips = concept_strips(model, explanation.images, selected, multipliers, mode="each")
    classes = model.class_names
    results = []
    for b, (path, stem, strip) in enumerate(zip(files, output_stems(files), strips, strict=True)):
        reconstruction_png = png_bytes(image_array(explanation.reconstructions[b]))
        reconstruction = out_dir / f"{stem}-reconstruction.png"
        atomic_write_bytes(reconstruction, reconstruction_png)
        figure = strip_figure(strip, classes, selection=f"{path.name}: top {top_k} by relevance")
        strip_png = figure_png(figure)
        strip_path = out_dir / f"{stem}-amplify.png"
        atomic_write_bytes(strip_path, strip_png)
        written = (reconstruction, reconstruction_png, strip_path, strip_png)
        results.append(_explained(explanation, b, path, *written))
    page = out_dir / PAGE
    atomic_write_text(page, render_explain_page(results, model_name, list(multipliers)))
    return results, page


def _explained(
    explanation: Explanation,
    b: int,
    path: Path,
    reconstruction: Path,
    reconstruction_png: bytes,
    strip: Path,
    strip_png: bytes,
) -> ExplainedImage:
    f_class, g_class = int(explanation.f_classes[b]), int(explanation.g_classes[b])
    concepts = [
        (int(k), float(explanation.relevance[b, k]), float(explanation.activations[b, k]))
        for k in explanation.top_concepts[b].tolist()
    ]
    return ExplainedImage(
        source=path,
        f_name=explanation.f_names[b],
        f_prob=float(explanation.f_probs[b, f_class]),
        g_name=explanation.g_names[b],
        g_prob=float(explanation.g_probs[b, g_class]),
        concepts=concepts,
        reconstruction=reconstruction,
        strip=strip,
        input_png=png_bytes(image_array(explanation.images[b])),
        reconstruction_png=reconstruction_png,
        strip_png=strip_png,
    )


def render_explain_page(
    images: Sequence[ExplainedImage], model_name: str, multipliers: Sequence[float]
) -> str:
    """The page as a string: per image, the input as the model saw it, its reconstruction, the
    predictions of f and g, the relevant concepts and the amplification strip."""
    template = _environment().get_template("explain.html.j2")
    return template.render(
        images=images,
        model_name=model_name,
        multipliers=[f"{m:g}" for m in multipliers],
        created=time.strftime("%Y-%m-%d %H:%M"),
    )
