"""The VisCoIN ensemble: frozen classifier f and generator G around the trained Ψ, Θ, Ω.

    x ─f→ feature maps ─Ψ→ (Φ, Φ') ─Θ→ g(x)            the interpretable prediction
                              └─Ω→ w⁺ ─G.synthesis→ x̃  the reconstruction / visualisation

One safetensors file (kind ``viscoin``) holds Ψ, Θ, Ω and their configs, and either embeds f and G
or refers to their files by path and SHA-256, so ``viscoin.load(path)`` rebuilds a ready ensemble.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from viscoin.errors import UserError
from viscoin.models.classifier import Classifier, classifier_from_checkpoint, load_classifier
from viscoin.models.concepts import ConceptExtractor
from viscoin.models.head import ConceptHead
from viscoin.models.inputs import ImageInput, prepare_images
from viscoin.models.translator import ConceptTranslator, default_mid
from viscoin.utils.checkpoint import build_checked, load_checkpoint, save_checkpoint

KIND = "viscoin"

# How an intervention on Φ (amplify, remove) is fed to Ω: "isolated" takes Ω's per-image input
# scale from the unmodified Φ(x), so only the changed concepts move; "literal" recomputes it from the
# modified maps, as the paper's code does, which rescales every other concept as well.
INTERVENTIONS = ("isolated", "literal")


def check_intervention(intervention: str) -> str:
    if intervention not in INTERVENTIONS:
        raise UserError(
            f"unknown intervention {intervention!r}: use one of {', '.join(INTERVENTIONS)}"
        )
    return intervention


@dataclass
class ViscoinOutput:
    """Everything one forward pass gives, for a batch of B images.

    f_logits (B, C), g_logits (B, C), concept_maps Φ (B, K, 3, 3), support Φ' (B, 9K),
    activations a (B, K), w_plus (B, num_ws, w_dim).
    """

    f_logits: torch.Tensor
    g_logits: torch.Tensor
    concept_maps: torch.Tensor
    support: torch.Tensor
    activations: torch.Tensor
    w_plus: torch.Tensor


@dataclass
class Explanation:
    """What :meth:`Viscoin.explain` gives for a batch of B images, K concepts, C classes.

    ``images`` (B, 3, R, R): the inputs as the model saw them, in [−1, 1] (resized and
    center-cropped when they came as files or PIL images).
    ``f_logits``, ``g_logits`` (B, C): the classifier f and the interpretable head g = Θ(Φ(x));
    ``f_probs``, ``g_probs`` (B, C): their softmax; ``f_classes``, ``g_classes`` (B,): the
    predicted class indices and ``f_names``, ``g_names`` (B lists) their names.
    ``activations`` a (B, K); ``concept_maps`` Φ (B, K, 3, 3); ``relevance`` r (B, K) in [−1, 1]
    for g's predicted class (:meth:`Viscoin.relevance`).
    ``top_concepts`` (B, k) long: each image's k most relevant concepts, most relevant first;
    ``top_relevance`` (B, k): their relevance.
    ``reconstructions`` x̃ (B, 3, R, R) in about [−1, 1].

    Item access by field name (``explanation["relevance"]``) works as on a dict.
    """

    images: torch.Tensor
    f_logits: torch.Tensor
    g_logits: torch.Tensor
    f_probs: torch.Tensor
    g_probs: torch.Tensor
    f_classes: torch.Tensor
    g_classes: torch.Tensor
    f_names: list[str]
    g_names: list[str]
    activations: torch.Tensor
    concept_maps: torch.Tensor
    relevance: torch.Tensor
    top_concepts: torch.Tensor
    top_relevance: torch.Tensor
    reconstructions: torch.Tensor

    def __getitem__(self, key: str) -> Any:
        names = [f.name for f in fields(self)]
        if key not in names:
            raise KeyError(f"{key!r}: an Explanation has {', '.join(names)}")
        return getattr(self, key)

    def __len__(self) -> int:
        """B, the number of images."""
        return self.images.shape[0]


class ViscoinCore(nn.Module):
    """The trained parts Ψ, Θ, Ω in one module (one DDP wrapper, one state dict).

    ``forward(stage_maps)`` → ``(g_logits, concept_maps, support, activations, w_plus)``;
    activations are taken before Θ's dropout.
    """

    def __init__(
        self, extractor: ConceptExtractor, head: ConceptHead, translator: ConceptTranslator
    ) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head
        self.translator = translator

    def forward(
        self, stage_maps: list[torch.Tensor], dropout_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``dropout_mask``: Θ's dropout draw (B, K, 3, 3), see ``ConceptHead.forward``."""
        concept_maps, support = self.extractor(stage_maps)
        g_logits, _ = self.head(concept_maps, dropout_mask)
        activations = ConceptHead.activations(concept_maps)
        w_plus = self.translator(concept_maps, support)
        return g_logits, concept_maps, support, activations, w_plus

    def config(self) -> dict[str, Any]:
        return {
            "extractor": self.extractor.config(),
            "head": self.head.config(),
            "translator": self.translator.config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ViscoinCore:
        return cls(
            ConceptExtractor(**config["extractor"]),
            ConceptHead(**config["head"]),
            ConceptTranslator(**config["translator"]),
        )


def build_core(
    classifier: Classifier,
    generator: nn.Module,
    resolution: int,
    n_concepts: int = 256,
    channels: int = 512,
    coarse: int = 2,
    mid: int | None = None,
    translator_layers: int = 1,
    dropout: float = 0.01,
    translator_lr_multiplier: float = 0.01,
    translator_linear_output: bool = False,
    translator_input_norm: str = "second_moment",
) -> ViscoinCore:
    """Fresh Ψ, Θ, Ω sized for ``classifier`` at ``resolution`` and for ``generator``'s W⁺ space;
    Ψ's inputs are the channels and sizes of f's feature maps, measured by one forward at
    ``resolution``; w̄ is copied from the generator's ``mapping.w_avg``."""
    shapes = classifier.feature_shapes(resolution)
    extractor = ConceptExtractor(
        [c for c, _, _ in shapes],
        [h if h == w else [h, w] for _, h, w in shapes],
        n_concepts,
        channels,
    )
    head = ConceptHead(n_concepts, classifier.num_classes, dropout)
    num_ws = generator.num_ws
    last = default_mid(num_ws) if mid is None else mid
    if not 0 <= coarse <= last < num_ws:  # only checkable once the generator is known
        raise UserError(
            f"viscoin.coarse={coarse} and viscoin.mid={mid} need 0 <= coarse <= mid < num_ws: "
            f"this generator has num_ws={num_ws} W+ rows (mid defaults to {default_mid(num_ws)}). "
            "Lower viscoin.coarse / viscoin.mid."
        )
    translator = ConceptTranslator(
        n_concepts,
        generator.num_ws,
        generator.w_dim,
        coarse=coarse,
        mid=mid,
        layers=translator_layers,
        lr_multiplier=translator_lr_multiplier,
        w_avg=generator.mapping.w_avg,
        linear_output=translator_linear_output,
        input_norm=translator_input_norm,
    )
    return ViscoinCore(extractor, head, translator)


class Viscoin(nn.Module):
    """The ensemble, in eval mode with every part frozen (for analysis and visualisation)."""

    def __init__(self, classifier: Classifier, core: ViscoinCore, generator: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.core = core
        self.generator = generator
        self.classes: list[str] | None = getattr(classifier, "classes", None)

    def train(self, mode: bool = True) -> Viscoin:
        """Only Ψ, Θ, Ω ever train: f and G stay in eval mode (no BatchNorm statistics updates)."""
        super().train(mode)
        self.classifier.eval()
        self.generator.eval()
        return self

    @property
    def n_concepts(self) -> int:
        return self.core.head.n_concepts

    @property
    def head_weight(self) -> torch.Tensor:
        """Θ_W (classes, K)."""
        return self.core.head.linear.weight

    @property
    def resolution(self) -> int:
        """R, the side of the square images the model takes and generates."""
        return int(self.generator.img_resolution)

    @property
    def class_names(self) -> list[str]:
        """The C class names (``class c`` where the model carries none)."""
        n_classes = self.head_weight.shape[0]
        if self.classes is not None and len(self.classes) == n_classes:
            return list(self.classes)
        return [f"class {c}" for c in range(n_classes)]

    def prepare(self, images: ImageInput) -> torch.Tensor:
        """Any accepted input (a path, a PIL image, a uint8 or [−1, 1] float tensor, (3, H, W) or
        (B, 3, H, W), or a list of them; see :mod:`viscoin.models.inputs`) → float (B, 3, R, R) in
        [−1, 1] on the model's device. A :class:`~viscoin.errors.UserError` names an input it
        cannot use."""
        reference = next(iter(self.core.parameters()))
        return prepare_images(images, self.resolution, reference.device, reference.dtype)

    def _check_concepts(self, concepts: Any, batch: int, per_image: bool = True) -> None:
        """Concept indices (J,) (or a (B, J) table, with ``per_image``) within [0, K), or a (B, K)
        boolean mask; a :class:`UserError` otherwise."""
        shapes = "(J,) or (B, J)" if per_image else "(J,)"
        try:
            table = torch.as_tensor(concepts)
        except (TypeError, ValueError, RuntimeError):
            table = None
        if table is not None and table.dtype == torch.bool:
            if tuple(table.shape) != (batch, self.n_concepts):
                raise UserError(
                    f"a concept mask must be ({batch}, {self.n_concepts}) for these images, "
                    f"got {tuple(table.shape)}."
                )
            return
        if (
            table is None
            or table.numel() == 0
            or table.is_floating_point()
            or table.ndim > (2 if per_image else 1)
        ):
            raise UserError(
                f"concepts must be integer indices {shapes} or a (B, K) boolean mask, "
                f"got {concepts!r}."
            )
        if table.ndim == 2 and table.shape[0] != batch:
            raise UserError(f"{batch} images but a concept table for {table.shape[0]}.")
        bad = sorted({k for k in table.flatten().tolist() if not 0 <= k < self.n_concepts})
        if bad:
            raise UserError(
                f"concept index {bad[0]} is out of range: this model has {self.n_concepts} "
                f"concepts (0..{self.n_concepts - 1})."
            )

    def forward(self, images: torch.Tensor) -> ViscoinOutput:
        """Images (B, 3, R, R) in [−1, 1] → :class:`ViscoinOutput`."""
        f_logits, maps = self.classifier.forward_features(images)
        g_logits, concept_maps, support, activations, w_plus = self.core(maps)
        return ViscoinOutput(f_logits, g_logits, concept_maps, support, activations, w_plus)

    def decode(
        self,
        concept_maps: torch.Tensor,
        support: torch.Tensor,
        noise_mode: str = "const",
        reference: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """G(Ω(Φ, Φ')): (B, K, 3, 3), (B, 9K) → images (B, 3, R, R) in [−1, 1].

        ``reference`` (B, K, 3, 3): the unmodified Φ(x) when ``concept_maps`` is an intervention on
        it (Ω's input scale is then taken from it; see :mod:`viscoin.models.translator`).
        """
        w_plus = self.core.translator(concept_maps, support, reference=reference)
        return self.generator.synthesis(w_plus, noise_mode=noise_mode)

    def decode_intervention(
        self,
        concept_maps: torch.Tensor,
        out: ViscoinOutput,
        intervention: str = "isolated",
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """Regenerate ``out``'s images with their concept maps replaced by ``concept_maps``
        (B, K, 3, 3), Φ' kept; ``intervention`` is one of :data:`INTERVENTIONS`. → (B, 3, R, R)."""
        check_intervention(intervention)
        reference = out.concept_maps if intervention == "isolated" else None
        return self.decode(concept_maps, out.support, noise_mode, reference=reference)

    def reconstruct(self, images: ImageInput) -> torch.Tensor:
        """x̃ = G(Ω(Ψ(f(x)))) with constant noise, (B, 3, R, R) → (B, 3, R, R).

        ``images``: anything :meth:`prepare` accepts."""
        out = self(self.prepare(images))
        return self.generator.synthesis(out.w_plus, noise_mode="const")

    def relevance(self, out: ViscoinOutput) -> torch.Tensor:
        """r_k(x) = α_k / max_l |α_l| with α_k = a_k · Θ_W[ĉ, k], ĉ = argmax g(x). → (B, K) in [−1, 1]."""
        predicted = out.g_logits.argmax(dim=1)
        contributions = out.activations * self.head_weight[predicted]
        return contributions / contributions.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)

    def amplify(
        self,
        images: ImageInput,
        concepts: list[int] | torch.Tensor,
        multipliers: list[float] = (0.0, 1.0, 2.0, 4.0),
        noise_mode: str = "const",
        intervention: str = "isolated",
    ) -> torch.Tensor:
        """Regenerate each image with the maps of ``concepts`` multiplied by each λ in ``multipliers``,
        Φ' fixed. ``concepts``: indices shared by the batch, or a (B, K) boolean mask;
        ``intervention``: one of :data:`INTERVENTIONS`. Images (B, 3, R, R) → (B, M, 3, R, R).

        ``images``: anything :meth:`prepare` accepts."""
        check_intervention(intervention)
        images = self.prepare(images)
        self._check_concepts(concepts, images.shape[0], per_image=False)
        if not multipliers or not all(math.isfinite(float(lam)) for lam in multipliers):
            raise UserError(f"multipliers must be finite numbers, got {list(multipliers)!r}.")
        out = self(images)
        if isinstance(concepts, torch.Tensor) and concepts.dtype == torch.bool:
            mask = concepts.to(images.device)
        else:
            mask = torch.zeros(
                images.shape[0], self.n_concepts, dtype=torch.bool, device=images.device
            )
            mask[:, list(concepts)] = True
        strips = []
        for lam in multipliers:
            scale = torch.where(mask, torch.as_tensor(float(lam), device=images.device), 1.0)
            maps = out.concept_maps * scale[:, :, None, None]
            strips.append(self.decode_intervention(maps, out, intervention, noise_mode))
        return torch.stack(strips, dim=1)

    @torch.no_grad()
    def explain(self, images: ImageInput, top_k: int = 3) -> Explanation:
        """Predict with f and g and say which concepts g's prediction rests on.

        ``images``: anything :meth:`prepare` accepts (paths, PIL images, uint8 or [−1, 1] float
        tensors (3, H, W) / (B, 3, H, W), or a list of them); ``top_k``: how many of each image's
        most relevant concepts :attr:`Explanation.top_concepts` lists, 1 ≤ k ≤ K.
        → :class:`Explanation` of the B images.
        """
        if (
            isinstance(top_k, bool)
            or not isinstance(top_k, int)
            or not 1 <= top_k <= self.n_concepts
        ):
            raise UserError(
                f"top_k must be an integer from 1 to {self.n_concepts} (the model's concepts), "
                f"got {top_k!r}."
            )
        images = self.prepare(images)
        out = self(images)
        relevance = self.relevance(out)
        # the order of interpret.relevance.select_concepts: highest r_k first, ties by index
        top = relevance.argsort(dim=1, descending=True, stable=True)[:, :top_k]
        f_probs, g_probs = out.f_logits.float().softmax(1), out.g_logits.float().softmax(1)
        f_classes, g_classes = f_probs.argmax(1), g_probs.argmax(1)
        names = self.class_names
        return Explanation(
            images=images,
            f_logits=out.f_logits,
            g_logits=out.g_logits,
            f_probs=f_probs,
            g_probs=g_probs,
            f_classes=f_classes,
            g_classes=g_classes,
            f_names=[names[c] for c in f_classes.tolist()],
            g_names=[names[c] for c in g_classes.tolist()],
            activations=out.activations,
            concept_maps=out.concept_maps,
            relevance=relevance,
            top_concepts=top,
            top_relevance=relevance.gather(1, top),
            reconstructions=self.generator.synthesis(out.w_plus, noise_mode="const"),
        )

    def heatmaps(
        self, images: ImageInput, concepts: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor
    ) -> torch.Tensor:
        """Where each of ``concepts`` lives in each image (Grad-CAM of a_k over f's stage maps,
        :func:`viscoin.interpret.heatmaps.concept_heatmaps`).

        ``images``: anything :meth:`prepare` accepts, B images; ``concepts``: J indices for every
        image, or a (B, J) table (e.g. ``explanation.top_concepts``). → (B, J, R, R) in [0, 1].
        """
        from viscoin.interpret.heatmaps import concept_heatmaps  # interpret builds on models

        images = self.prepare(images)
        if isinstance(concepts, torch.Tensor) and concepts.dtype == torch.bool:
            raise UserError("heatmaps take concept indices (J,) or (B, J), not a boolean mask.")
        self._check_concepts(concepts, images.shape[0])
        return concept_heatmaps(self, images, concepts)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_viscoin(
    path: str | Path,
    core: ViscoinCore,
    classifier_path: str | Path,
    generator_path: str | Path,
    embed: bool = False,
    extra: dict[str, Any] | None = None,
    classifier_layers: list[str] | None = None,
) -> Path:
    """Write Ψ, Θ, Ω (prefix ``core.``) and the references to f and G.

    With ``embed`` the classifier and generator tensors are stored too (prefixes ``classifier.`` and
    ``generator.``) with their configs, and the file stands alone. ``classifier_layers``: the
    layers of f that Ψ reads when they are not the ones stored in the classifier file.
    """
    tensors = {f"core.{k}": v for k, v in core.state_dict().items()}
    config: dict[str, Any] = {"core": core.config()}
    for part, part_path in (("classifier", classifier_path), ("generator", generator_path)):
        part_path = Path(part_path)
        if embed:
            part_tensors, part_config, part_extra = load_checkpoint(part_path)
            tensors.update({f"{part}.{k}": v for k, v in part_tensors.items()})
            config[part] = {"embedded": True, "config": part_config, "extra": part_extra}
        else:
            config[part] = {
                "embedded": False,
                "path": str(part_path.resolve()),
                # from the file's own folder: a runs/ folder moved as a whole still finds it
                "relative": _relative_to(part_path, Path(path).parent),
                "sha256": file_sha256(part_path),
            }
    if classifier_layers:
        config["classifier"]["layers"] = list(classifier_layers)
    return save_checkpoint(path, tensors, KIND, config, extra)


def _relative_to(target: Path, folder: Path) -> str | None:
    try:
        return os.path.relpath(target.resolve(), folder.resolve())
    except ValueError:  # another drive (Windows)
        return None


def part_file(info: dict[str, Any], path: str | Path, part: str) -> Path:
    """Where a referenced classifier or generator is: first relative to the VisCoIN file's folder
    (the run, or all runs, moved together), then at the absolute path it was saved with."""
    candidates = []
    if info.get("relative"):
        candidates.append(Path(path).resolve().parent / info["relative"])
    candidates.append(Path(info["path"]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(
        f"{path} refers to its {part} at {' or '.join(map(str, candidates))}, which is missing. "
        "Put the file back, or re-export the model with the parts embedded "
        "(viscoin export RUN OUT --embed)."
    )


def _core_from_file(config: dict[str, Any], tensors: dict, path: str | Path) -> ViscoinCore:
    """Ψ, Θ, Ω of a VisCoIN file, checked against its tensors before they are built."""
    parts = {"extractor": ConceptExtractor, "head": ConceptHead, "translator": ConceptTranslator}
    core_config = config.get("core")
    if not isinstance(core_config, dict) or set(core_config) != set(parts):
        raise UserError(
            f"{path}: its 'core' config is not Ψ, Θ, Ω's; the file was edited or damaged."
        )
    for name, cls in parts.items():  # unknown keys in one part
        if not isinstance(core_config[name], dict):
            raise UserError(f"{path}: its core.{name} config is not a JSON object.")
        unknown = sorted(set(core_config[name]) - set(inspect.signature(cls).parameters))
        if unknown:
            raise UserError(
                f"{path}: config keys core.{name}.{', '.join(unknown)} are unknown to this "
                "viscoin; the file was edited or written by a newer viscoin."
            )
    sub = {k[5:]: v for k, v in tensors.items() if k.startswith("core.")}
    return build_checked(ViscoinCore, core_config, sub, path, factory=ViscoinCore.from_config)


def load_viscoin(
    path: str | Path, device: str | torch.device = "cpu", check_hashes: bool = True
) -> Viscoin:
    """Rebuild the ensemble from a file written by :func:`save_viscoin`; eval mode, frozen."""
    from viscoin.models.stylegan2 import Generator, load_generator
    from viscoin.models.stylegan2.generator import build_from_checkpoint

    tensors, config, extra = load_checkpoint(path, kind=KIND)
    core = _core_from_file(config, tensors, path)
    parts = {}
    layers = config["classifier"].get("layers")  # f's layers Ψ reads, when not the file's own
    for part, loader in (
        ("classifier", lambda ref: load_classifier(ref, layers=layers)),
        ("generator", load_generator),
    ):
        info = config[part]
        if info["embedded"]:
            sub = {k[len(part) + 1 :]: v for k, v in tensors.items() if k.startswith(part + ".")}
            if part == "classifier":
                model = classifier_from_checkpoint(info["config"], sub, path, layers)
                model.classes = info["extra"].get("classes")
            else:
                model = build_from_checkpoint(Generator, info["config"], sub, path)
            parts[part] = model
        else:
            ref = part_file(info, path, part)
            if check_hashes and file_sha256(ref) != info["sha256"]:
                raise UserError(
                    f"the {part} file {ref} changed since {path} was saved (SHA-256 differs). "
                    "Use the original file, or pass check_hashes=False if you know it is compatible."
                )
            parts[part] = loader(ref)
    model = Viscoin(parts["classifier"], core, parts["generator"])
    model.extra = extra
    return model.to(device).eval().requires_grad_(False)


def export_viscoin(source: str | Path, out: str | Path, embed: bool = True) -> Path:
    """Re-write a VisCoIN file with its classifier and generator embedded (or referenced)."""
    tensors, config, extra = load_checkpoint(source, kind=KIND)
    embedded = [part for part in ("classifier", "generator") if config[part]["embedded"]]
    if embedded:
        if not embed:
            raise UserError(
                f"{source} already embeds its {' and '.join(embedded)}; it cannot be re-referenced."
            )
        return save_checkpoint(out, tensors, KIND, config, extra)
    core = _core_from_file(config, tensors, source)
    refs = {part: part_file(config[part], source, part) for part in ("classifier", "generator")}
    return save_viscoin(
        out, core, refs["classifier"], refs["generator"], embed, extra,
        config["classifier"].get("layers"),
    )  # fmt: skip
