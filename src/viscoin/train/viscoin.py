"""Training the VisCoIN ensemble: Ψ, Θ, Ω against a frozen classifier f and generator G.

Each step takes ``real_batch`` training images and ``fake_batch`` images sampled from G (detached),
computes the objective of METHOD.md §2 (see :mod:`viscoin.train.losses`) and updates two Adam
optimisers (Ψ+Θ and Ω). The data order, augmentations, latent codes, Θ's dropout masks and G's
noise images are pure functions of (seed, step, image index in the global batch), and Ω's batch
normalisation uses the global batch's statistics under DDP, so a resumed run, the same run on N
processes and the same batch split into ``grad_accum`` parts follow the same path (the last one
except for batch statistics, which are those of each part).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from viscoin.config import Config
from viscoin.errors import TrainingDiverged, UserError
from viscoin.evaluate.basic import evaluate_ensemble
from viscoin.models.classifier import Classifier
from viscoin.models.translator import INPUT_NORMS
from viscoin.models.viscoin import Viscoin, build_core, save_viscoin
from viscoin.train.distributed import DistInfo, barrier, use_global_batch_norm
from viscoin.train.losses import (
    build_lpips,
    feature_distance,
    orthogonality_loss,
    output_fidelity_loss,
    pixel_losses,
    soft_cross_entropy,
    sparsity_loss,
    w_regularisation,
)
from viscoin.train.sampling import (
    DROPOUT_STREAM,
    RECONSTRUCTION_NOISE_STREAM,
    SAMPLE_NOISE_STREAM,
    ResumableBatchSampler,
    SeededDataset,
    dropout_masks,
    noise_images,
    step_generator,
)
from viscoin.train.step import (
    StepCompute,
    make_optimizers,
    resolve_speed_options,
    to_device,
)
from viscoin.utils.checkpoint import (
    checkpoint_step,
    load_checkpoint,
    load_state,
    rng_state,
    save_state,
    set_rng_state,
)
from viscoin.utils.device import compile_cache, out_of_memory_as_user_error
from viscoin.utils.runs import MetricsLogger, RunDir

MODEL_FILE = "viscoin.safetensors"
STATE_FILE = "viscoin.state.pt"
_NO_STEP = 2**62  # "no non-finite step yet": above any step, so an all-reduce MIN finds the first
NOISE_MODES = ("random", "const")


@dataclass
class LossWeights:
    alpha: float = 0.5
    beta: float = 3.0
    gamma: float = 0.1
    delta: float = 0.2
    w_reg: float = 1.0
    feature: float = 0.0


def viscoin_losses(
    images: torch.Tensor,
    classifier: Classifier,
    core: nn.Module,
    generator: nn.Module,
    weights: LossWeights,
    lpips: nn.Module | None = None,
    warm: bool | float | torch.Tensor = True,
    mark: Callable[[str], None] | None = None,
    gamma: float | torch.Tensor | None = None,
    synthesis_kwargs: dict[str, Any] | None = None,
    dropout_mask: torch.Tensor | None = None,
    noise: list[torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """All loss terms for one batch (B, 3, R, R) in [−1, 1]; ``total`` is their sum.

    ``warm``: whether L_of and L_spar are on (they switch on after the warm-up iterations).
    ``mark(name)`` is called after each part of the computation (used by the benchmark's timers).
    ``gamma`` overrides ``weights.gamma`` (the classifier term's schedule). ``warm`` and ``gamma``
    may be 0-d tensors (one compiled graph for every value). ``synthesis_kwargs`` go to
    ``generator.synthesis`` (compute dtype, memory format, modulated-conv path).
    ``dropout_mask`` (B, K, 3, 3): Θ's dropout draw (None: the head's own). ``noise``: G's random
    noise images for x̃, (B, 1, r, r) per ``noise_resolutions()`` (None: constant noise).
    """
    mark = mark or (lambda name: None)
    with torch.no_grad():
        f_logits, maps = classifier.forward_features(images)
    mark("classifier")
    g_logits, concept_maps, _support, activations, w_plus = core(maps, dropout_mask)
    mark("extractor+head+translator")
    reconstruction = generator.synthesis(
        w_plus,
        noise_mode="const" if noise is None else "random",
        noise=noise,
        **(synthesis_kwargs or {}),
    )
    mark("synthesis")
    gamma = weights.gamma if gamma is None else gamma
    zero = reconstruction.new_zeros((), dtype=torch.float32)
    ce_rec, feature = zero, zero
    if isinstance(gamma, torch.Tensor) or gamma != 0 or weights.feature:
        # gradients of the classifier terms flow through the frozen f into x̃, Ω and Ψ
        rec_logits, rec_maps = classifier.forward_features(reconstruction)
        ce_rec = gamma * soft_cross_entropy(rec_logits, f_logits)
        if weights.feature:
            feature = weights.feature * feature_distance(rec_maps, maps)
    # else both terms are off: f(x̃) and its backward pass would only add zeros
    mark("classifier on x̃")
    mse, l1 = pixel_losses(reconstruction, images)
    terms = {
        "mse": mse,
        "l1": l1,
        "ce_rec": ce_rec,
        **({"feature": feature} if weights.feature else {}),
        "orth": orthogonality_loss(_unwrap(core).extractor.concept_weight),
        "w_reg": weights.w_reg * w_regularisation(w_plus.float(), _unwrap(core).translator.w_avg),
    }
    if lpips is not None:
        terms["lpips"] = weights.beta * lpips(reconstruction, images)
        mark("lpips")
    # Before the warm-up ends these two terms are multiplied by 0 rather than left out, so every
    # parameter takes part in every step (DistributedDataParallel requires it).
    on = warm if isinstance(warm, torch.Tensor) else float(warm)
    terms["of"] = on * output_fidelity_loss(g_logits, f_logits, weights.alpha)
    terms["sparsity"] = on * sparsity_loss(activations.float(), concept_maps.float(), weights.delta)
    terms["total"] = sum(terms.values())
    mark("other losses")
    return terms


def _unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "_orig_mod", module)  # torch.compile
    return getattr(module, "module", module)  # DistributedDataParallel


def gamma_at(step: int, v: Any) -> float:
    """Weight of the classifier term on reconstructions at ``step``: ``gamma_early`` for the first
    ``gamma_start`` iterations (letting Ω fit the images first), ``gamma`` afterwards."""
    return v.gamma if step >= v.gamma_start else v.gamma_early


def learning_rate(step: int, cfg: Config) -> float:
    """Base lr, multiplied by ``decay_factor`` at each multiple of ``decay_every`` after the
    ``decay_start`` fraction of the iterations (0.8 every 1 000 after half-way, as in the paper)."""
    v = cfg.viscoin
    start = int(v.decay_start * v.iterations)
    if step <= start:
        return v.lr
    decays = step // v.decay_every - start // v.decay_every
    return v.lr * v.decay_factor**decays


def resolve_model_file(path: str | Path, default_name: str, what: str) -> Path:
    """A model file, or a run directory holding ``checkpoints/<default_name>``."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / default_name
        if not candidate.is_file():
            raise UserError(
                f"{path} is a directory without checkpoints/{default_name}. Give the {what} file itself."
            )
        return candidate
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    return path


def is_architecture(spec: str | Path) -> bool:
    """Whether ``--classifier`` names an architecture (``torchvision:NAME``, ``timm:NAME``)."""
    return str(spec).startswith(("torchvision:", "timm:"))


def classifier_file(spec: str | Path) -> Path:
    """``--classifier``: a classifier file or a run directory holding ``checkpoints/best.safetensors``."""
    path = resolve_model_file(spec, "best.safetensors", "classifier")
    if path.suffix != ".safetensors":
        raise UserError(
            f"{path} is not a viscoin classifier file (.safetensors). For a state dict of a "
            "torchvision or timm architecture, name the architecture and the file: "
            f"--classifier torchvision:NAME (or timm:NAME) --set classifier.weights={path}"
        )
    return path


def wrap_classifier(arch: str, cfg: Config, classes: list[str], out: Path) -> Path:
    """``--classifier torchvision:NAME|timm:NAME``: that architecture for ``classes``, with the
    weights of ``classifier.weights`` (a local file: nothing is downloaded) and the layers,
    normalisation, input size and options of the ``classifier`` config, written to ``out`` as a
    classifier file."""
    from viscoin.models.classifier import build_configured_classifier, save_classifier

    c = cfg.classifier
    if c.weights in ("none", "", None, "imagenet"):
        raise UserError(
            f"--classifier {arch} needs the trained weights as a local file: --set "
            "classifier.weights=PATH (a state dict of the architecture, .safetensors or .pt). "
            "viscoin downloads nothing here."
        )
    model = build_configured_classifier(c, len(classes), arch=arch, new_head=False)
    model.feature_shapes(cfg.data.resolution)  # fails here, before the file is written
    return save_classifier(model, out, list(classes), {"weights": str(c.weights)})


class ViscoinTrainer:
    """Owns the models, optimisers, data stream and run directory of one training run."""

    def __init__(
        self,
        cfg: Config,
        run: RunDir,
        classifier_path: Path,
        generator_path: Path,
        train_set: Dataset,
        test_set: Dataset,
        dist: DistInfo,
        resume: bool = False,
    ) -> None:
        from viscoin.models.classifier import load_classifier
        from viscoin.models.stylegan2 import load_generator

        self.cfg, self.run, self.dist = cfg, run, dist
        v = cfg.viscoin
        device = dist.device
        self.device = device
        self.classifier_path, self.generator_path = classifier_path, generator_path
        self.classifier = load_classifier(classifier_path, device, layers=cfg.classifier.layers)
        self.generator = load_generator(generator_path, device)
        self._check_compatible(train_set)
        self.train_set, self.test_set = train_set, test_set
        self.weights = LossWeights(
            v.alpha, v.beta, v.gamma, v.delta, v.w_reg_weight, v.feature_weight
        )
        self.lpips = build_lpips(v.lpips)
        if self.lpips is not None:
            self.lpips.to(device)
        for name, value in (("real_batch", v.real_batch), ("fake_batch", v.fake_batch)):
            if value % (dist.world * v.grad_accum):
                raise UserError(
                    f"viscoin.{name}={value} must be divisible by processes × grad_accum "
                    f"({dist.world} × {v.grad_accum})."
                )
        if v.translator_input_norm not in INPUT_NORMS:
            raise UserError(
                f"viscoin.translator_input_norm must be one of {', '.join(INPUT_NORMS)}, "
                f"not {v.translator_input_norm!r}"
            )
        if v.noise_mode not in NOISE_MODES:
            raise UserError(
                f"viscoin.noise_mode must be one of {', '.join(NOISE_MODES)}, not {v.noise_mode!r}"
            )
        torch.manual_seed(cfg.run.seed)
        self.core = build_core(
            self.classifier,
            self.generator,
            cfg.data.resolution,
            n_concepts=v.n_concepts,
            channels=v.channels,
            coarse=v.coarse,
            mid=v.mid,
            translator_layers=v.translator_layers,
            dropout=v.dropout,
            translator_lr_multiplier=v.translator_lr_multiplier,
            translator_linear_output=v.translator_linear_output,
            translator_input_norm=v.translator_input_norm,
        ).to(device)
        self.opt_concepts, self.opt_translator = make_optimizers(self.core, v.lr, device)
        self.step = 0
        self.elapsed = 0.0
        if resume:
            self._load_state()
        # the step whose checkpoint is on disk (None: none yet); a divergence never overwrites it
        self.saved_step: int | None = self.step if resume else None
        # first step with a non-finite loss and that loss, tracked on the device (no host sync
        # per step, which would stall compiled/CUDA-graph steps); read in check_finite()
        self._bad_step = torch.full((), _NO_STEP, dtype=torch.long, device=device)
        self._bad_loss = torch.zeros((), device=device)
        self.model = Viscoin(self.classifier, self.core, self.generator)
        self.forward_core: nn.Module = self.core
        if dist.enabled:
            # Ω's BatchNorm over the support: statistics of the global batch, as in one process
            use_global_batch_norm(self.core)
            self.forward_core = nn.parallel.DistributedDataParallel(
                self.core, device_ids=[device.index] if device.type == "cuda" else None
            )
        # viscoin.amp and viscoin.compile resolved (auto: bf16 and compiled on a capable GPU);
        # everything after reads self.compute.options, never the config's settings
        self.compute = StepCompute(
            self.classifier,
            self.forward_core,
            self.generator,
            self.lpips,
            self.weights,
            resolve_speed_options(v, device, dist.world),
            device,
        )
        self.logger = MetricsLogger(run.metrics, enabled=dist.is_main)
        if resume:
            self.logger.truncate_after(self.step)
            if dist.is_main:  # the resumed run's settings, once its state and log have loaded
                cfg.save(run.config)
        self.logger.enable_tensorboard(run.path / "tensorboard")  # when tensorboard is installed

    def _check_compatible(self, train_set: Dataset) -> None:
        res = self.cfg.data.resolution
        if self.generator.img_resolution != res:
            raise UserError(
                f"the generator makes {self.generator.img_resolution} px images but data.resolution is {res}. "
                f"Use --set data.resolution={self.generator.img_resolution} or another generator."
            )
        classes = getattr(train_set, "classes", None)
        if classes is not None and len(classes) != self.classifier.num_classes:
            raise UserError(
                f"the classifier predicts {self.classifier.num_classes} classes but the dataset has "
                f"{len(classes)}. Train the classifier on this dataset first."
            )

    # -- state ---------------------------------------------------------------------------------

    def _load_state(self) -> None:
        """Resume from the state file, the commit record of a checkpoint: it holds Ψ, Θ, Ω, the
        optimisers, the step and the RNG. The model file is written just before it; if a run was
        stopped between the two, the model file is ahead of the state and is rewritten from it."""
        state_file = self.run.checkpoints / STATE_FILE
        state = load_state(state_file, map_location="cpu")
        step = int(state["step"])
        model_file = self.run.checkpoints / MODEL_FILE
        if "core" in state:
            core_state = state["core"]
        else:  # a state written before it held the weights: the model file must be its pair
            tensors, _config, extra = load_checkpoint(model_file, kind="viscoin")
            if extra.get("step") != step:
                raise UserError(
                    f"{model_file} is from step {extra.get('step')} but {state_file} from step "
                    f"{step}: the run was stopped between its two checkpoint writes, and this "
                    "older checkpoint format cannot be repaired. Start the run anew."
                )
            core_state = {k[5:]: v for k, v in tensors.items() if k.startswith("core.")}
        try:
            self.core.load_state_dict(core_state)
            self.opt_concepts.load_state_dict(state["opt_concepts"])
            self.opt_translator.load_state_dict(state["opt_translator"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(
                f"cannot resume from {state_file}: it does not match this configuration's "
                f"Ψ, Θ, Ω ({str(exc).strip().splitlines()[0][:200]}). Resume with the run's own "
                "config (config.yaml)."
            ) from None
        self.step = step
        self.elapsed = float(state.get("elapsed", 0.0))
        set_rng_state(state["rng"])
        if self.dist.is_main and checkpoint_step(model_file) != step:
            self._save_model()  # the pair on disk is consistent again before training goes on

    def _save_model(self) -> None:
        save_viscoin(
            self.run.checkpoints / MODEL_FILE,
            self.core,
            self.classifier_path,
            self.generator_path,
            extra={"step": self.step, "classes": getattr(self.train_set, "classes", None)},
            classifier_layers=self.cfg.classifier.layers,
        )

    def check_finite(self, weights: bool = False) -> None:
        """Raise :class:`TrainingDiverged` if a step so far had a non-finite loss (or, with
        ``weights``, Ψ, Θ, Ω's weights are not finite now). One host sync; under DDP every rank
        learns of any rank's divergence (an all-reduce), so all of them stop together."""
        bad_step = self._bad_step.clone()
        if weights:
            finite = torch.stack([p.isfinite().all() for p in self.core.parameters()]).all()
            bad_step = torch.where(finite, bad_step, torch.full_like(bad_step, self.step))
        if self.dist.enabled:
            torch.distributed.all_reduce(bad_step, op=torch.distributed.ReduceOp.MIN)
        step = int(bad_step.item())
        if step == _NO_STEP:
            return
        if step == int(self._bad_step.item()):
            quantity = f"loss is {float(self._bad_loss.item())}"
        elif weights and step == self.step:
            quantity = "Ψ, Θ, Ω weights are not finite"
        else:
            quantity = "loss is not finite on another process"
        kept = None
        if self.saved_step is not None:
            kept = f"step {self.saved_step}, in {self.run.checkpoints / MODEL_FILE}"
        raise TrainingDiverged(
            "VisCoIN training",
            step,
            quantity,
            kept,
            "lower viscoin.lr (or resume from the kept checkpoint with a lower lr)",
        )

    def save(self) -> None:
        """One checkpoint: the model file, then the state file (the commit record, holding the
        weights too), both atomic, once the weights and every loss since the last check are
        finite (else :class:`TrainingDiverged`); only rank 0 writes. A kill between the two
        writes leaves the previous state, which resume continues from."""
        self.check_finite(weights=True)
        self.saved_step = self.step
        if not self.dist.is_main:
            return
        self._save_model()
        save_state(
            self.run.checkpoints / STATE_FILE,
            {
                "core": self.core.state_dict(),
                "opt_concepts": self.opt_concepts.state_dict(),
                "opt_translator": self.opt_translator.state_dict(),
                "step": self.step,
                "elapsed": self.elapsed,
                "rng": rng_state(),
            },
        )

    # -- data ----------------------------------------------------------------------------------

    def _real_batches(self):
        v, d = self.cfg.viscoin, self.cfg.data
        sampler = ResumableBatchSampler(
            len(self.train_set),
            v.real_batch,
            self.cfg.run.seed,
            self.step,
            self.dist.rank,
            self.dist.world,
        )
        loader = DataLoader(
            SeededDataset(self.train_set, self.cfg.run.seed),
            batch_sampler=sampler,
            num_workers=d.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=d.num_workers > 0,
            # its own generator: creating the iterator must not draw from the global RNG
            generator=step_generator(self.cfg.run.seed, self.step),
        )
        for images, _labels in loader:
            yield images.to(self.device, non_blocking=True)

    @torch.no_grad()
    def _fake_batch(self, step: int) -> torch.Tensor:
        """This rank's share of the step's generated images (latents seeded by (seed, step))."""
        v, G = self.cfg.viscoin, self.generator
        if v.fake_batch == 0:  # real images only
            size = G.img_resolution
            return torch.zeros(0, G.img_channels, size, size, device=self.device)
        gen = step_generator(self.cfg.run.seed, step)
        z = torch.randn(v.fake_batch, G.z_dim, generator=gen)
        c = torch.zeros(v.fake_batch, G.c_dim)
        if G.c_dim:
            c[
                torch.arange(v.fake_batch), torch.randint(G.c_dim, (v.fake_batch,), generator=gen)
            ] = 1
        share = v.fake_batch // self.dist.world
        sl = slice(self.dist.rank * share, (self.dist.rank + 1) * share)
        noise = None
        if v.noise_mode == "random":
            noise = self._noise(step, SAMPLE_NOISE_STREAM, v.fake_batch)
            noise = [n[sl] for n in noise]
        z, c = to_device(z[sl], self.device), to_device(c[sl], self.device)
        return self.compute.sample(z, c, noise)

    def _noise(self, step: int, stream: int, n: int) -> list[torch.Tensor]:
        """G's noise images for ``n`` images of the global batch, seeded by (seed, step, stream)."""
        gen = step_generator(self.cfg.run.seed, step, self.device, stream)
        return noise_images(self.generator.synthesis.noise_resolutions(), n, gen)

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of this rank's real and generated images in the step's global draws: real image j
        of the global batch is row j, generated image j row ``real_batch + j``."""
        v, rank, world = self.cfg.viscoin, self.dist.rank, self.dist.world
        real, fake = v.real_batch // world, v.fake_batch // world
        return (
            torch.arange(rank * real, (rank + 1) * real, device=self.device),
            v.real_batch + torch.arange(rank * fake, (rank + 1) * fake, device=self.device),
        )

    # -- loop ----------------------------------------------------------------------------------

    def train_step(self, real: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        v = self.cfg.viscoin
        lr = learning_rate(step, self.cfg)
        for opt in (self.opt_concepts, self.opt_translator):
            for group in opt.param_groups:
                group["lr"] = lr
        fake = self._fake_batch(step)
        self.core.train()
        # the step's random draws, for every image of the global batch (rows: see _rows)
        n_global = v.real_batch + v.fake_batch
        masks = noise = None
        if v.dropout > 0:
            gen = step_generator(self.cfg.run.seed, step, self.device, DROPOUT_STREAM)
            masks = dropout_masks(n_global, (v.n_concepts, 3, 3), v.dropout, gen)
        if v.noise_mode == "random":
            noise = self._noise(step, RECONSTRUCTION_NOISE_STREAM, n_global)
        sums: dict[str, torch.Tensor] = {}
        real_rows, fake_rows = self._rows()
        chunks = zip(
            real.chunk(v.grad_accum),
            fake.chunk(v.grad_accum),
            real_rows.chunk(v.grad_accum),
            fake_rows.chunk(v.grad_accum),
            strict=True,
        )
        for i, (r, f, r_rows, f_rows) in enumerate(chunks):
            images, rows = torch.cat([r, f]), torch.cat([r_rows, f_rows])
            last = i == v.grad_accum - 1
            sync = (
                self.forward_core.no_sync()
                if self.dist.enabled and not last and hasattr(self.forward_core, "no_sync")
                else contextlib.nullcontext()
            )
            with sync:
                terms = self.compute.losses(
                    images,
                    step >= v.warmup,
                    gamma_at(step, v),
                    dropout_mask=None if masks is None else masks[rows],
                    noise=None if noise is None else [n[rows] for n in noise],
                )
                (terms["total"] / v.grad_accum).backward()
            for k, t in terms.items():
                sums[k] = sums.get(k, 0) + t.detach() / v.grad_accum
        self.opt_concepts.step()
        self.opt_translator.step()
        self.opt_concepts.zero_grad(set_to_none=True)
        self.opt_translator.zero_grad(set_to_none=True)
        sums["lr"] = torch.tensor(lr)
        return sums

    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        loader = DataLoader(
            self.test_set, batch_size=self.cfg.data.batch_size, shuffle=False, num_workers=0
        )
        with self.compute.eager():
            return evaluate_ensemble(
                self.model,
                loader,
                self.lpips,
                max_batches=self.cfg.viscoin.eval_batches if max_batches is None else max_batches,
                device=self.device,
                autocast_dtype=self.compute.options.dtype,  # the step's precision
            )

    def fit(self, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
        """Train until ``viscoin.iterations`` (or ``stop_after`` more steps, for tests).

        A compiled step keeps torch.compile's caches in the run's ``compile-cache/``: a resumed
        run with the same shapes loads the compiled graphs instead of compiling them again.
        """
        compiled = self.compute.options.compile != "none"
        v = self.cfg.viscoin
        bf16 = self.compute.options.amp == "bf16"
        advice = (
            ("" if bf16 else "--resume with --set viscoin.amp=bf16 (half the memory), or ")
            + f"start again with lower viscoin.real_batch and viscoin.fake_batch (now "
            f"{v.real_batch} and {v.fake_batch}); the checkpoint on disk is untouched"
        )
        with (
            compile_cache(self.run.path / "compile-cache" if compiled else None),
            out_of_memory_as_user_error(advice),
        ):
            return self._fit(progress, stop_after)

    def _fit(self, progress: bool, stop_after: int | None) -> dict[str, Any]:
        from tqdm import tqdm

        v = self.cfg.viscoin
        end = v.iterations if stop_after is None else min(v.iterations, self.step + stop_after)
        bar = tqdm(
            total=v.iterations,
            initial=self.step,
            desc="viscoin",
            disable=not (progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        batches = self._real_batches()
        window: dict[str, torch.Tensor] = {}
        window_steps = 0
        last_eval: dict[str, float] = {}
        t0 = time.time()
        while self.step < end:
            real = next(batches)
            terms = self.train_step(real, self.step)
            self.step += 1
            first = ~terms["total"].isfinite() & (self._bad_step == _NO_STEP)
            self._bad_step = torch.where(first, self.step, self._bad_step)
            self._bad_loss = torch.where(first, terms["total"].float(), self._bad_loss)
            for k, t in terms.items():
                window[k] = window.get(k, 0) + t
            window_steps += 1
            bar.update(1)
            if self.step % v.log_every == 0 or self.step == end:
                self.check_finite()  # before logging: a diverged run logs no null losses
                record = self._global_means(window, window_steps)
                self.logger.log(self.step, record, split="train")
                bar.set_postfix(
                    loss=f"{record['total']:.3f}",
                    mse=f"{record['mse']:.3f}",
                    of=f"{record['of']:.3f}",
                )
                window, window_steps = {}, 0
            if v.eval_every and self.step % v.eval_every == 0 and self.step != end:
                last_eval = self._eval_and_log()
            if v.checkpoint_every and self.step % v.checkpoint_every == 0:
                self.elapsed += time.time() - t0
                t0 = time.time()
                self.save()
                barrier(self.dist)
        bar.close()
        self.elapsed += time.time() - t0
        if self.step >= v.iterations:
            last_eval = self._eval_and_log()
        self.save()
        barrier(self.dist)
        self.logger.close()
        return {"step": self.step, "elapsed_s": round(self.elapsed, 1), **last_eval}

    def _global_means(self, window: dict[str, torch.Tensor], steps: int) -> dict[str, float]:
        """Means over the logging window and over all processes (one all-reduce per log)."""
        keys = sorted(window)
        values = (
            torch.stack([torch.as_tensor(window[k], device=self.device).float() for k in keys])
            / steps
        )
        if self.dist.enabled:
            torch.distributed.all_reduce(values)
            values /= self.dist.world
        return dict(zip(keys, values.tolist(), strict=True))

    def _eval_and_log(self) -> dict[str, float]:
        self.check_finite(weights=True)  # every rank: it all-reduces
        if not self.dist.is_main:
            return {}
        metrics = self.evaluate()
        self.logger.log(self.step, metrics, split="test")
        return metrics


def format_summary(result: dict[str, Any]) -> str:
    """One line: step, time and the test metrics."""
    parts = [f"step {result['step']}", f"{result.get('elapsed_s', 0):.0f}s"]
    for key in ("acc_f", "acc_g", "fidelity", "mse", "l1", "lpips"):
        if key in result and not math.isnan(result[key]):
            parts.append(f"{key} {result[key]:.4f}")
    return ", ".join(parts)
