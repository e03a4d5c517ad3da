"""What the explorer holds between requests, and every computation it makes.

An :class:`Explorer` keeps the model resident (eval mode, every call under ``torch.no_grad()``),
the optional dataset split and the last few images looked at: for each, Ψ's output on it
(:class:`~viscoin.models.viscoin.ViscoinOutput`: Φ, Φ′, …), so a slider move only runs Ω, G and
the two classifiers. A dataset image is named ``d<index>``, an upload ``u<first 16 hex digits of
its SHA-256>``; an upload is held only while it is among the last :data:`HELD_IMAGES` images.

No web framework here: :mod:`viscoin.app.server` turns each method into an endpoint, a
:class:`RequestError` into a 4xx JSON answer. The model is used by one request at a time (a lock):
f's feature maps are collected by hooks registered for each call.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viscoin.data.transforms import TEST_RESIZE_RATIO, decode_image_bytes
from viscoin.errors import UserError, user_message
from viscoin.interpret.amplify import predict
from viscoin.interpret.common import model_device
from viscoin.models.viscoin import Viscoin, ViscoinOutput
from viscoin.utils.figures import data_uri, image_array, png_bytes

# The sliders: λ from 0 (concept removed) to MAX_LAMBDA, 1 being the reconstruction.
MAX_LAMBDA = 4.0
LAMBDA_STEP = 0.25
MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_PIXELS = 50_000_000  # refused before decoding: a small file can hold a huge image
HELD_IMAGES = 8
PER_PAGE = 24
MAX_PER_PAGE = 200
CONCEPT_PAGE_IMAGES = 6
FORMATS = "PNG, JPEG, WebP, BMP, ..."


class RequestError(UserError):
    """A request the explorer refuses: ``status`` is the HTTP status it answers with (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Held:
    """One image being explored: ``image`` (1, 3, R, R) in [−1, 1] as the model sees it, ``out``
    the model's output on it, ``relevance`` r(x) (K,), ``name`` how the page names it."""

    image: torch.Tensor
    out: ViscoinOutput
    relevance: torch.Tensor
    name: str


def image_png(image: torch.Tensor) -> bytes:
    """An image (3, R, R) in [−1, 1] → PNG bytes (as every figure of the project converts it)."""
    return png_bytes(image_array(image))


def resize_note(width: int, height: int, resolution: int) -> str:
    """What :meth:`Viscoin.prepare` does to a ``width`` × ``height`` image (the test transform),
    said in words; empty when it is already R × R."""
    if (width, height) == (resolution, resolution):
        return ""
    short = int(resolution * TEST_RESIZE_RATIO)
    return (
        f"resized from {width}×{height} (short side to {short} px) and center-cropped to "
        f"{resolution}×{resolution}, as the test images are"
    )


def decode_upload(
    data: bytes, name: str = "the upload", max_pixels: int = MAX_UPLOAD_PIXELS
) -> torch.Tensor:
    """The bytes of an uploaded file → uint8 (3, H, W), as :func:`viscoin.data.transforms.load_image`
    decodes a file. The header is read first: a file that is not an image (415), one of more than
    ``max_pixels`` pixels (413) and one that does not decode (422) raise a :class:`RequestError`."""
    from PIL import Image

    if not data:
        raise RequestError(f"{name} is empty.", 400)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as pil:
                width, height = pil.size
    except Image.DecompressionBombError:
        width = height = None
    except Exception:  # Pillow raises many types for bytes that are no image
        raise RequestError(
            f"cannot decode {name} as an image: the file is corrupt or not an image ({FORMATS}).",
            415,
        ) from None
    if width is None or width * height > max_pixels:
        size = "" if width is None else f" ({width}×{height})"
        raise RequestError(
            f"{name} has too many pixels{size}: at most {max_pixels / 1e6:g} million. "
            "Downscale it first.",
            413,
        )
    try:
        return decode_image_bytes(data, name)
    except UserError:
        raise RequestError(
            f"cannot decode {name} as an image: the file is corrupt or truncated ({FORMATS}).",
            422,
        ) from None


def dataset_labels(dataset: Any) -> np.ndarray:
    """The label of every image of ``dataset`` (N,), read without decoding the images where the
    dataset lists them (``labels``, or a ``TensorDataset``'s second tensor)."""
    labels = getattr(dataset, "labels", None)
    if labels is None and hasattr(dataset, "tensors") and len(dataset.tensors) > 1:
        labels = dataset.tensors[1]
    if labels is None:
        labels = [int(dataset[i][1]) for i in range(len(dataset))]
    return np.asarray(torch.as_tensor(labels), dtype=np.int64).reshape(-1)


class Explorer:
    """The explorer's state and work for one model.

    ``dataset``: the split to browse (``dataset[i]`` → (image (3, R, R) in [−1, 1], label)), or
    None for uploads only, then ``dataset_note`` says why; ``top_k``: the concepts shown with a
    slider, most relevant first; ``analytics``: builds the split's
    :class:`~viscoin.interpret.analytics.ConceptAnalytics` for the concept pages, called once, on
    the first concept page (default: one pass over ``dataset``, not cached on disk).
    """

    def __init__(
        self,
        model: Viscoin,
        dataset: Any = None,
        *,
        name: str = "",
        dataset_name: str = "",
        split: str = "test",
        top_k: int = 5,
        dataset_note: str = "",
        analytics: Callable[[], Any] | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        max_upload_pixels: int = MAX_UPLOAD_PIXELS,
        held_images: int = HELD_IMAGES,
    ) -> None:
        self.model = model.eval()
        self.dataset = dataset
        self.name = name
        self.dataset_name = dataset_name
        self.split = split
        self.top_k = max(1, min(int(top_k), model.n_concepts))
        self.dataset_note = dataset_note
        self.max_upload_bytes = max_upload_bytes
        self.max_upload_pixels = max_upload_pixels
        self.classes = model.class_names
        self.labels = dataset_labels(dataset) if dataset is not None else None
        self._analytics_fn = analytics
        self._analytics: Any = None
        self._held: OrderedDict[str, Held] = OrderedDict()
        self._held_images = max(1, held_images)
        self._lock = threading.RLock()  # one model call at a time

    # -- what the page needs to start ----------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The model, the split (or why there is none) and the sliders' range, for the page."""
        dataset = None
        if self.dataset is not None:
            dataset = {"name": self.dataset_name, "split": self.split, "size": len(self.dataset)}
        return {
            "name": self.name,
            "resolution": self.model.resolution,
            "classes": self.classes,
            "n_concepts": self.model.n_concepts,
            "top_k": self.top_k,
            "dataset": dataset,
            "dataset_note": self.dataset_note,
            "min_lambda": 0.0,
            "max_lambda": MAX_LAMBDA,
            "lambda_step": LAMBDA_STEP,
            "per_page": PER_PAGE,
            "max_upload_bytes": self.max_upload_bytes,
        }

    # -- the dataset ---------------------------------------------------------------------------

    def _need_dataset(self) -> Any:
        if self.dataset is None:
            raise RequestError(
                f"no dataset is loaded ({self.dataset_note or 'uploads only'}).", 404
            )
        return self.dataset

    def _check_index(self, index: Any) -> int:
        dataset = self._need_dataset()
        if isinstance(index, bool) or not isinstance(index, int):
            raise RequestError(f"an image index is an integer, got {index!r}.")
        if not 0 <= index < len(dataset):
            raise RequestError(
                f"image index {index} is out of range: the {self.split} split has "
                f"{len(dataset)} images (0..{len(dataset) - 1}).",
                404,
            )
        return index

    def list_images(
        self, page: int = 0, per_page: int = PER_PAGE, label: int | None = None
    ) -> dict[str, Any]:
        """One page of the split, optionally of one true class: ``items`` (index, label, class
        name), ``page``, ``pages``, ``total`` (images of that class)."""
        self._need_dataset()
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise RequestError(f"per_page must be from 1 to {MAX_PER_PAGE}, got {per_page}.")
        indices = np.arange(len(self.labels))
        if label is not None:
            if not 0 <= label < len(self.classes):
                raise RequestError(
                    f"class {label} is out of range: the model has {len(self.classes)} classes."
                )
            indices = indices[self.labels == label]
        pages = max(1, math.ceil(len(indices) / per_page))
        if not 0 <= page < pages:
            raise RequestError(f"page {page} is out of range: there are {pages} pages.", 404)
        shown = indices[page * per_page : (page + 1) * per_page]
        return {
            "items": [
                {"index": int(i), "label": int(self.labels[i]), "name": self._class(self.labels[i])}
                for i in shown
            ],
            "page": page,
            "pages": pages,
            "total": len(indices),
        }

    def thumbnail(self, index: int) -> bytes:
        """Dataset image ``index`` as PNG bytes (R × R)."""
        image, _ = self._need_dataset()[self._check_index(index)]
        return image_png(image)

    def _class(self, c: int) -> str:
        c = int(c)
        return self.classes[c] if 0 <= c < len(self.classes) else f"class {c}"

    # -- images ----------------------------------------------------------------------------------

    def select(self, index: Any) -> dict[str, Any]:
        """Explore dataset image ``index``: see :meth:`_analyse` for what comes back."""
        index = self._check_index(index)
        image, label = self.dataset[index]
        return self._analyse(
            f"d{index}", image[None], f"{self.split} image {index}", self._class(label), ""
        )

    def upload(self, data: bytes, filename: str = "") -> dict[str, Any]:
        """Explore an uploaded file (its bytes): decoded, then resized and center-cropped as
        :meth:`Viscoin.prepare` does a file (the answer's ``note`` says so)."""
        if len(data) > self.max_upload_bytes:
            raise RequestError(self.too_large_message(len(data)), 413)
        shown = filename.strip()[:120] or "the upload"
        pixels = decode_upload(data, shown, self.max_upload_pixels)
        height, width = pixels.shape[-2:]
        image = self.model.prepare(pixels)
        note = resize_note(int(width), int(height), self.model.resolution)
        key = "u" + hashlib.sha256(data).hexdigest()[:16]
        return self._analyse(key, image, shown, None, note)

    def too_large_message(self, size: int | None = None) -> str:
        """Why an upload of ``size`` bytes is refused."""
        given = f" ({size / 2**20:.1f} MiB)" if size is not None else ""
        return (
            f"the upload is too large{given}: at most {self.max_upload_bytes / 2**20:g} MiB. "
            "Downscale it first."
        )

    def _hold(self, key: str, held: Held) -> None:
        with self._lock:
            self._held[key] = held
            self._held.move_to_end(key)
            while len(self._held) > self._held_images:
                self._held.popitem(last=False)

    def held(self, key: Any) -> Held:
        """The held image ``key``; a dataset image no longer held is analysed again."""
        if not isinstance(key, str):
            raise RequestError(f"an image is named by a string such as 'd0', got {key!r}.")
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                self._held.move_to_end(key)
                return held
        if key.startswith("d") and key[1:].isdigit():
            index = self._check_index(int(key[1:]))
            image, _ = self.dataset[index]
            return self._run(key, image[None], f"{self.split} image {index}")[0]
        if key.startswith("u"):
            raise RequestError(
                "this upload is no longer held (only the last few images are): upload it again.",
                404,
            )
        raise RequestError(f"unknown image {key!r}.", 404)

    @torch.no_grad()
    def _analyse(
        self, key: str, image: torch.Tensor, name: str, label: str | None, note: str
    ) -> dict[str, Any]:
        """Run the model once on ``image`` (1, 3, R, R) and hold the output. → ``id``, ``name``,
        ``label`` (true class, or None), ``note`` (resizing), ``input`` and ``reconstruction``
        (PNG data URIs), ``input_prediction`` (f and g on the input), ``prediction`` (f and g on
        the reconstruction), ``concepts`` (the top-k concepts: index, relevance, activation) and
        ``relevance``, ``activations`` (K,) for every concept."""
        start = time.perf_counter()
        held, reconstruction = self._run(key, image, name)
        with self._lock:
            on_reconstruction = predict(self.model, reconstruction)
        ms = (time.perf_counter() - start) * 1000
        image, out, relevance = held.image, held.out, held.relevance
        top = relevance.argsort(descending=True, stable=True)[: self.top_k].tolist()
        activations = out.activations[0]
        f_prob, g_prob = out.f_logits[0].float().softmax(0), out.g_logits[0].float().softmax(0)
        return {
            "id": key,
            "name": name,
            "label": label,
            "note": note,
            "input": data_uri(image_png(image[0])),
            "reconstruction": data_uri(image_png(reconstruction[0])),
            "input_prediction": {
                "f": self._prediction(int(f_prob.argmax()), float(f_prob.max())),
                "g": self._prediction(int(g_prob.argmax()), float(g_prob.max())),
            },
            "prediction": self._predictions(on_reconstruction),
            "concepts": [
                {
                    "concept": k,
                    "relevance": float(relevance[k]),
                    "activation": float(activations[k]),
                }
                for k in top
            ],
            "relevance": [float(v) for v in relevance.tolist()],
            "activations": [float(v) for v in activations.tolist()],
            "ms": ms,
        }

    @torch.no_grad()
    def _run(self, key: str, image: torch.Tensor, name: str) -> tuple[Held, torch.Tensor]:
        """The model on ``image`` (1, 3, R, R), held as ``key`` → (held, reconstruction x̃
        (1, 3, R, R), G(Ω(Φ, Φ′)) with constant noise)."""
        with self._lock:
            image = image.to(model_device(self.model), torch.float32)
            out = self.model(image)
            held = Held(image, out, self.model.relevance(out)[0], name)
            reconstruction = self.model.generator.synthesis(out.w_plus, noise_mode="const")
            self._hold(key, held)
        return held, reconstruction

    def _prediction(self, c: int, prob: float) -> dict[str, Any]:
        return {"class": c, "name": self._class(c), "prob": prob}

    def _predictions(self, p: Any) -> dict[str, Any]:
        """f's and g's top class and probability of one image (:func:`predict` on (1, …))."""
        return {
            "f": self._prediction(int(p.f_class[0]), float(p.f_prob[0])),
            "g": self._prediction(int(p.g_class[0]), float(p.g_prob[0])),
        }

    # -- the sliders -----------------------------------------------------------------------------

    def scales(self, lambdas: Any) -> torch.Tensor:
        """``{concept: λ}`` (keys may be strings, as JSON sends them) → the (K,) factors of every
        concept map: λ_k for the listed concepts, 1 for the others; a :class:`RequestError` names a
        bad concept or a λ outside [0, :data:`MAX_LAMBDA`]."""
        if not isinstance(lambdas, Mapping):
            raise RequestError('lambdas must be an object {"concept": λ, ...}.')
        n_concepts = self.model.n_concepts
        scale = torch.ones(n_concepts)
        for key, value in lambdas.items():
            try:
                k = int(key)
            except (TypeError, ValueError):
                raise RequestError(f"concept {key!r} is not an integer.") from None
            if not 0 <= k < n_concepts:
                raise RequestError(
                    f"concept index {k} is out of range: this model has {n_concepts} concepts "
                    f"(0..{n_concepts - 1})."
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RequestError(f"λ of concept {k} must be a number, got {value!r}.")
            if not (math.isfinite(value) and 0 <= value <= MAX_LAMBDA):
                raise RequestError(
                    f"λ of concept {k} must be from 0 to {MAX_LAMBDA:g}, got {value}."
                )
            scale[k] = float(value)
        return scale

    @torch.no_grad()
    def regenerate(self, key: Any, lambdas: Any) -> dict[str, Any]:
        """Image ``key`` regenerated with every listed φ_k multiplied by its λ_k at once (Φ′ kept,
        the isolated intervention of :meth:`Viscoin.decode_intervention`), classified again by f
        and g. → ``image`` (PNG data URI), ``prediction`` (f and g on it), ``ms`` (time taken)."""
        scale = self.scales(lambdas)
        held = self.held(key)
        model = self.model
        with self._lock:
            start = time.perf_counter()
            maps = held.out.concept_maps * scale.to(held.out.concept_maps)[None, :, None, None]
            generated = model.decode_intervention(maps, held.out, "isolated")
            prediction = self._predictions(predict(model, generated))
            png = image_png(generated[0])
            ms = (time.perf_counter() - start) * 1000
        return {"id": key, "image": data_uri(png), "prediction": prediction, "ms": ms}

    # -- the concept page ------------------------------------------------------------------------

    def analytics(self) -> Any:
        """The split's concept analytics, computed on the first call (under the model's lock)."""
        self._need_dataset()
        with self._lock:
            if self._analytics is None:
                if self._analytics_fn is not None:
                    self._analytics = self._analytics_fn()
                else:
                    from viscoin.interpret.analytics import compute_concept_analytics

                    loader = torch.utils.data.DataLoader(self.dataset, batch_size=32)
                    self._analytics = compute_concept_analytics(self.model, loader, self.classes)
            return self._analytics

    def concept_cards(self, concept: Any, key: str | None = None) -> list[Any]:
        """The cards of concept k: over the split (the atlas's
        :func:`~viscoin.report.html.concept_card`) when there is one, and on image ``key`` when
        one is given (:func:`~viscoin.report.html.image_concept_card`)."""
        from viscoin.report.html import concept_card, image_concept_card

        if isinstance(concept, bool) or not isinstance(concept, int):
            raise RequestError(f"a concept is an integer, got {concept!r}.")
        if not 0 <= concept < self.model.n_concepts:
            raise RequestError(
                f"concept index {concept} is out of range: this model has "
                f"{self.model.n_concepts} concepts (0..{self.model.n_concepts - 1}).",
                404,
            )
        cards = []
        if self.dataset is not None:
            analytics = self.analytics()
            ordered = analytics.ordered_concepts()
            with self._lock:
                card = concept_card(
                    self.model, self.dataset, analytics, concept, 0, CONCEPT_PAGE_IMAGES
                )
            if concept in ordered:
                card.rank = ordered.index(concept) + 1
            else:
                card.rank_text = f"dead on the {self.split} split (never active)"
            cards.append(card)
        if key is not None:
            held = self.held(key)
            with self._lock:
                card = image_concept_card(self.model, held.image, concept, name=held.name)
            if cards:
                card.no_classes = f"measured over the {self.split} split: see the card above"
            cards.append(card)
        return cards


def explore_target(
    target: str | Path, dataset: str | None = None, data_root: str | None = None
) -> tuple[Any, Path]:
    """What ``viscoin explore`` opens, resolved without loading anything: a run directory or bundle
    → (its :class:`~viscoin.interpret.target.Target`, or None for a bundle without ``dataset``;
    the model file). ``dataset``/``data_root`` override a run's data, as in the other
    interpretation commands. One :class:`UserError` for a missing or wrong path."""
    from viscoin.interpret.target import checkpoint_run, resolve_model_file, resolve_target

    path = Path(target)
    bundle = path.suffix == ".safetensors" and (not path.is_file() or checkpoint_run(path) is None)
    if bundle and dataset is None:
        return None, resolve_model_file(path)[0]
    resolved = resolve_target(path, dataset=dataset, data_root=data_root)
    return resolved, resolved.model_file


def open_explorer(
    resolved: Any,
    model_file: Path,
    split: str | None = None,
    device: Any = "cpu",
    top_k: int = 5,
    max_images: int | None = None,
    explicit_data: bool = False,
    warn: Callable[[str], None] = print,
) -> Explorer:
    """An :class:`Explorer` of what :func:`explore_target` resolved, as ``viscoin explore`` opens
    it: the model on ``device`` and the ``split`` (default ``test``) of the run's dataset. A
    bundle without a dataset serves uploads only. When the run's own dataset cannot be opened
    (not on this machine), ``warn`` says so and uploads still work; with ``explicit_data`` (a
    dataset or root asked for) or an explicit ``split``, it must open. The concept pages'
    analytics are cached in the run (or ``./viscoin-outputs/<bundle>``), over the first
    ``max_images`` images."""
    from viscoin.interpret.target import (
        check_split_classes,
        load_split,
        load_target_model,
        target_analytics,
    )
    from viscoin.models.viscoin import load_viscoin

    if resolved is None:
        model = load_viscoin(model_file, device)
        note = (
            "this bundle names no dataset: upload images, or restart with --dataset NAME "
            "(and --data-root DIR) to browse a split"
        )
        return Explorer(model, None, name=model_file.stem, top_k=top_k, dataset_note=note)
    model = load_target_model(resolved, device)
    split_name = split or "test"
    try:
        data = load_split(resolved, split_name)
    except UserError as exc:
        if explicit_data or split is not None:
            raise
        reason = user_message(exc).rstrip(".")
        note = (
            f"the {split_name} split of {resolved.cfg.data.name} cannot be opened here ({reason})"
        )
        warn(f"warning: {note}; serving uploads only (--dataset / --data-root point to the data)")
        return Explorer(
            model, None, name=resolved.name, top_k=top_k, dataset_note=f"{note}; uploads only"
        )
    check_split_classes(resolved, model, data)
    classes = getattr(data, "classes", None)
    if model.classes is None and classes is not None:
        model.classes = list(classes)

    def analytics() -> Any:
        return target_analytics(
            resolved, model, data, split_name, max_images=max_images, progress=True
        )[0]

    return Explorer(
        model,
        data,
        name=resolved.name,
        dataset_name=resolved.cfg.data.name,
        split=split_name,
        top_k=top_k,
        analytics=analytics,
    )
