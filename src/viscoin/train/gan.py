"""StyleGAN2 training (``viscoin train gan``): the generator VisCoIN later drives, trained on the
task's own images.

The objective and schedule are StyleGAN2-ADA's: non-saturating logistic loss, lazy R1 on real
images every ``r1_interval`` steps, optional lazy path-length regularisation, style mixing, an EMA
copy of the generator (the one that is saved and used), and Adam with the lr/betas of lazily
regularised networks rescaled by ``interval / (interval + 1)``. With ``gan.augment`` on, every
image D sees (real and generated, in D's loss, inside R1 and in G's loss) goes through the ADA
pipeline of :mod:`viscoin.train.augment`, whose p is tuned from E[sign D(real)] (``ada``) or fixed.
Resuming is exact: models, optimisers, p and its statistics, RNG states and the data position are
all restored.

Under ``torchrun`` (one process per GPU, :mod:`viscoin.train.distributed`) ``gan.batch_size`` stays
the global batch, as StyleGAN2-ADA's ``--batch``, and N processes train what one process would with
it, up to float rounding:

* Every process draws the random numbers of the whole global batch (latents of every phase,
  generated labels, style mixing, noise images, path-length noise, augmentation) from identically
  seeded streams and keeps its share of the rows: process r takes rows r, r + N, r + 2N, … (real
  images: the same rows of :class:`InfiniteBatches`' global batches). Interleaved rather than
  contiguous, because a minibatch-std group is every (B/G)-th row of a batch of B: with the
  interleaved share, each process's groups are exactly the groups one process forms.
* After each phase's backward the phase's network's gradients are averaged over the processes:
  each loss is a mean over an equal share, so the average is the gradient of the global batch's
  mean loss. ``w_avg`` moves towards the global batch's mean w, ``pl_mean`` towards the global
  mean path length (and the penalty's gradient through that mean is the global one), ADA's
  statistics are summed over the processes: networks, G_ema, ``pl_mean`` and p stay identical
  on every process.
* Only rank 0 writes (snapshots, sample grids, metrics, the quality monitor and
  ``generator-best.safetensors``); a resume restores the same state file on every rank (RNG
  states included, rank 0's: every rank draws the same), and since nothing in it depends on the
  number of processes, a run resumes on any number that splits its batch. Divergence, the ADA
  stall and the time budget are decided together, so all processes stop at the same step.

Where this loop departs from StyleGAN2-ADA's ``training_loop.py`` / ``loss.py`` (the phases'
gradients are otherwise the official ones, ``tests/train/test_gan_objective.py``):

* ``w_avg`` (the mapping's running mean w, VisCoIN's w̄) moves once per step, in D's main phase
  (StyleGAN3's convention); StyleGAN2-ADA also moves it in G's main and path-length phases.
* G's Adam lr/betas get the lazy-regularisation rescaling only when path lengths are regularised
  (``gan.pl_weight`` > 0); StyleGAN2-ADA rescales G's by 4/5 even with a zero path-length weight.
* The networks compute in float32 unless ``gan.num_fp16_res`` says otherwise, without
  ``conv_clamp`` unless set (``--cfg auto``: float16 in the 4 highest resolutions, clamp 256);
  TF32 only with ``gan.tf32``.
* The ADA pipeline is this package's own (:mod:`viscoin.train.augment` lists how it differs).
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from viscoin.config import Config, GanConfig
from viscoin.data.transforms import to_uint8
from viscoin.errors import UserError, UserNotice
from viscoin.models.stylegan2 import Discriminator, Generator, save_discriminator, save_generator
from viscoin.models.stylegan2.generator import image_grid, save_image
from viscoin.models.stylegan2.layers import SynthesisLayer
from viscoin.train.augment import AdaTuner, AugmentPipe, check_augment_config
from viscoin.train.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    sum_over_ranks,
)
from viscoin.train.gan_init import (
    DISCRIMINATOR_FILE,
    GENERATOR_FILE,
    STATE_FILE,
    InitSource,
    apply_init_architecture,
    check_init_resolution,
    load_init_source,
)
from viscoin.train.gan_quality import QualityMonitor, check_quality_config
from viscoin.train.graphs import (
    PhaseGraph,
    graphs_unavailable,
    phase_gradients,
    resolve_cuda_graphs,
)
from viscoin.utils.checkpoint import (
    checkpoint_step,
    load_state,
    read_metadata,
    rng_state,
    save_state,
    set_rng_state,
)
from viscoin.utils.device import compile_cache, out_of_memory_as_user_error, seed_everything
from viscoin.utils.runs import MetricsLogger, RunDir

BEST_FILE = "generator-best.safetensors"  # G_ema at the lowest Fréchet distance measured
GRID_SIZE = 16  # images in each snapshot's sample grid


def build_networks(g: GanConfig, img_channels: int, c_dim: int) -> tuple[Generator, Discriminator]:
    """The generator and discriminator a :class:`GanConfig` describes."""
    common = {
        "channel_base": g.channel_base,
        "channel_max": g.channel_max,
        "num_fp16_res": g.num_fp16_res,
        "conv_clamp": g.conv_clamp,
    }
    G = Generator(
        z_dim=g.z_dim,
        c_dim=c_dim,
        w_dim=g.w_dim,
        img_resolution=g.resolution,
        img_channels=img_channels,
        mapping_kwargs={"num_layers": g.mapping_layers},
        synthesis_kwargs=common,
    )
    D = Discriminator(
        c_dim=c_dim,
        img_resolution=g.resolution,
        img_channels=img_channels,
        architecture=g.d_architecture,
        epilogue_kwargs={"mbstd_group_size": g.mbstd_group_size},
        **common,
    )
    return G, D


def set_cuda_precision(g: GanConfig) -> None:
    """cuDNN autotuning on; TF32 matrix products and convolutions only with ``gan.tf32``
    (StyleGAN2-ADA trains with TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = g.tf32
    torch.backends.cudnn.allow_tf32 = g.tf32
    torch.backends.cudnn.benchmark = True


def lazy_adam(
    params: Any,
    lr: float,
    betas: tuple[float, float],
    reg_interval: int | None,
    fused: bool = False,
) -> torch.optim.Adam:
    """Adam; with lazy regularisation every ``reg_interval`` steps, lr and betas are rescaled by
    ``c = interval / (interval + 1)`` so that main + regularisation steps average to the nominal ones.
    ``fused``: PyTorch's fused kernels (CUDA; a few launches per step instead of several per
    parameter tensor).
    """
    if reg_interval:
        ratio = reg_interval / (reg_interval + 1)
        lr, betas = lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-8, fused=fused or None)


class InfiniteBatches(Sampler[list[int]]):
    """Batches of indices from consecutive seeded permutations of the dataset, from any batch on.

    Batch ``k`` is always the same indices for a given seed, so a resumed run sees exactly the data
    an uninterrupted one would have. ``batch_size`` is the global batch; process ``rank`` of
    ``world`` gets its rows ``rank, rank + world, …`` of each (all of it alone).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        start_batch: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.size, self.batch_size, self.seed, self.start_batch = (
            size,
            batch_size,
            seed,
            start_batch,
        )
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[int]]:
        position = self.start_batch * self.batch_size
        epoch, permutation = -1, None
        while True:
            batch = []
            for _ in range(self.batch_size):
                e, i = divmod(position, self.size)
                if e != epoch:
                    epoch = e
                    generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                    permutation = torch.randperm(self.size, generator=generator).tolist()
                batch.append(permutation[i])
                position += 1
            yield batch[self.rank :: self.world]


@dataclass
class GanState:
    """Everything a training step changes."""

    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    pl_mean: torch.Tensor
    step: int = 0
    augment_pipe: AugmentPipe | None = None  # None: D sees the images as they are
    ada: AdaTuner | None = None  # None: p stays where gan.augment put it
    ada_stall_since: int | None = None  # the step since which p = 1 with r_t above the target


class GanLoss:
    """StyleGAN2-ADA's losses, one method per training phase; each calls ``backward`` itself.

    The latents ``z`` (N, z_dim) and labels ``c`` (N, c_dim) of generated images that the methods
    take are those of the global batch (N images over all processes, the same on every process);
    each process generates its rows of them (:meth:`rows`) and draws every other random number
    for the global batch too, keeping its rows. Real images and their labels are this process's
    share already. Alone (``dist`` None or of one process) the rows are all of them.
    """

    def __init__(
        self, state: GanState, g: GanConfig, seed: int = 0, dist: DistInfo | None = None
    ) -> None:
        self.s, self.g, self.seed = state, g, seed
        self.dist = dist if dist is not None else DistInfo(0, 1, 0, state.pl_mean.device)
        # The augmentation's own random stream, reseeded from (seed, step) at every step: the draws
        # of a step never depend on what ran before it, so a resumed run makes the same ones.
        self.augment_generator = torch.Generator(device=state.pl_mean.device)
        # The main phases' synthesis network and discriminator: compiled with ``gan.compile``.
        # The regularisation phases differentiate twice, which compiled graphs do not support:
        # they always run the eager modules (the same parameters). Compiled by Inductor, the
        # synthesis network draws its noise images with Inductor's own generator: other (equally
        # distributed) noise than eager mode's, everything else the same computation.
        self.synthesis: torch.nn.Module = state.G.synthesis
        self.discriminator: torch.nn.Module = state.D
        if g.compile:
            self.synthesis = torch.compile(state.G.synthesis, mode=g.compile_mode, dynamic=False)
            self.discriminator = torch.compile(state.D, mode=g.compile_mode, dynamic=False)
        # The layers with noise inputs, in the order SynthesisNetwork.forward(noise=) takes them.
        self.noise_layers = [
            m for m in state.G.synthesis.modules() if isinstance(m, SynthesisLayer)
        ]
        # With CUDA graphs (use_cuda_graphs): the phases' graphs, and the augmentation's passes
        # never read the device (the same result, every transform computed).
        self.graphs: dict[str, PhaseGraph] = {}
        self.graph_safe = False

    def use_cuda_graphs(self) -> None:
        """Run each phase as a CUDA graph (:class:`PhaseGraph`) from its fourth call on; one CUDA
        process only (the phases of several all-reduce inside)."""
        reason = graphs_unavailable(self.world)
        if reason is not None:
            raise UserError(reason)
        s, augment = self.s, [self.augment_generator] if self.s.augment_pipe is not None else []
        self.graph_safe = True
        self.graphs = {
            "G_main": PhaseGraph(s.G, self.generator_main, augment),
            "G_pl": PhaseGraph(s.G, self.generator_pl),
            "D_main": PhaseGraph(s.D, self.discriminator_main, augment),
            "D_r1": PhaseGraph(s.D, self.discriminator_r1, augment),
        }

    @property
    def world(self) -> int:
        return self.dist.world

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global-batch tensor: (N, ...) → (N / world, ...), rows
        ``rank, rank + world, …`` (the minibatch-std groups of one process are then those of the
        global batch)."""
        return x if self.world == 1 else x[self.dist.rank :: self.world]

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`rows`: every process's (b, ...) → the global batch (world·b, ...)
        in its order (one all-gather)."""
        if self.world == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        torch.distributed.all_gather(parts, x.contiguous())
        return torch.stack(parts, dim=1).flatten(0, 1)

    def begin_step(self, step: int) -> None:
        """Seed the augmentation draws of training step ``step``."""
        self.augment_generator.manual_seed((self.seed % 2**31) * 2**32 + step)

    def run_G(
        self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False, eager: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z (N, z_dim), c (N, c_dim) of the global batch → this process's images
        (N / world, C, R, R) and the W+ used (N / world, num_ws, w_dim). ``eager``: the
        uncompiled synthesis network (a double backward follows)."""
        G = self.s.G
        ws = G.mapping(self.rows(z), self.rows(c), update_emas=update_emas and self.world == 1)
        if update_emas and self.world > 1:
            self._update_w_avg(ws[:, 0])
        if self.g.style_mixing > 0:
            # From a random row on, the layers take a second latent's styles (mixing regularisation).
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
            mix = torch.rand([], device=ws.device) < self.g.style_mixing
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, ws.shape[1]))
            second = self.rows(torch.randn_like(z))
            # rows >= cutoff from the second latent: a mask, not ws[:, cutoff:], whose tensor
            # bound would wait for the GPU (a host sync in every G pass)
            later = torch.arange(ws.shape[1], device=ws.device) >= cutoff
            ws = torch.where(later[None, :, None], G.mapping(second, self.rows(c)), ws)
        noise = None
        if self.world > 1:  # the global batch's noise images; alone, each layer draws its own
            n = z.shape[0]
            noise = [
                self.rows(torch.randn([n, 1, layer.resolution, layer.resolution], device=ws.device))
                if layer.use_noise
                else None
                for layer in self.noise_layers
            ]
        synthesis = G.synthesis if eager else self.synthesis
        return synthesis(ws, noise_mode="random", noise=noise), ws

    def _update_w_avg(self, w: torch.Tensor) -> None:
        """Move ``w_avg`` towards the global batch's mean w, as the mapping does with one process
        (``w`` (b, w_dim): this process's rows; one all-reduce of their mean)."""
        mapping = self.s.G.mapping
        if mapping.w_avg_beta is None:
            return
        mean = w.detach().mean(dim=0)
        torch.distributed.all_reduce(mean)
        mapping.w_avg.copy_((mean / self.world).lerp(mapping.w_avg, mapping.w_avg_beta))

    def run_D(self, images: torch.Tensor, c: torch.Tensor, eager: bool = False) -> torch.Tensor:
        """This process's (b, C, R, R) → logits (b, 1), through the augmentation when it is on
        (its draws made for the global batch, this process's rows kept). ``eager``: the
        uncompiled discriminator (a double backward follows)."""
        pipe, graph_safe = self.s.augment_pipe, self.graph_safe or None
        if pipe is not None and self.world == 1:
            images = pipe(images, self.augment_generator, graph_safe)
        elif pipe is not None:
            n, _, h, w = images.shape
            draws = pipe.draw(n * self.world, h, w, images.device, self.augment_generator)
            mine = draws.select(slice(self.dist.rank, None, self.world))
            images = pipe.apply(images, mine, graph_safe)
        return (self.s.D if eager else self.discriminator)(images, c)

    def observe_real(self, logits: torch.Tensor) -> None:
        """Feed D's logits on real images to the ADA heuristic (r_t = E[sign D(real)])."""
        if self.s.ada is not None:
            self.s.ada.observe(logits)

    def generator_main(self, z: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """Non-saturating loss: mean softplus(-D(G(z)))."""
        images, _ = self.run_G(z, c)
        logits = self.run_D(images, self.rows(c))
        loss = F.softplus(-logits).mean()
        loss.backward()
        return {"loss_G": loss.detach(), "score_fake": logits.detach().mean()}

    def generator_pl(
        self, z: torch.Tensor, c: torch.Tensor, gain: float
    ) -> dict[str, torch.Tensor]:
        """Path-length regularisation on half the global batch (z[:N // 2], each process its rows
        of them): ‖Jᵀy‖ towards its running mean, which follows the mean over all of them."""
        batch = max(z.shape[0] // 2, 1)
        images, ws = self.run_G(z[:batch], c[:batch], eager=True)
        noise = torch.randn([batch, *images.shape[1:]], dtype=images.dtype, device=images.device)
        noise = self.rows(noise) / math.sqrt(images.shape[2] * images.shape[3])
        (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        # The global mean, differentiable: its gradient reaches every process's lengths.
        mean = lengths.mean() if self.world == 1 else sum_over_ranks(lengths.sum()) / batch
        pl_mean = self.s.pl_mean.lerp(mean, 0.01)
        self.s.pl_mean.copy_(pl_mean.detach())
        penalty = (lengths - pl_mean).square()
        # `images[:, 0, 0, 0] * 0` keeps every synthesis parameter in the graph (as the official code).
        (images[:, 0, 0, 0] * 0 + penalty * self.g.pl_weight).mean().mul(gain).backward()
        return {"pl_penalty": penalty.detach().mean(), "pl_mean": self.s.pl_mean.clone()}

    def discriminator_main(
        self, real: torch.Tensor, real_c: torch.Tensor, z: torch.Tensor, c: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """softplus(D(G(z))) + softplus(-D(x)); the generated images also update ``w_avg``."""
        with torch.no_grad():
            fake, _ = self.run_G(z, c, update_emas=True)
        fake_logits = self.run_D(fake, self.rows(c))
        loss_fake = F.softplus(fake_logits).mean()
        loss_fake.backward()
        real_logits = self.run_D(real.detach(), real_c)
        self.observe_real(real_logits)
        loss_real = F.softplus(-real_logits).mean()
        loss_real.backward()
        return {
            "loss_D": (loss_fake + loss_real).detach(),
            "loss_D_fake": loss_fake.detach(),
            "loss_D_real": loss_real.detach(),
            "score_real": real_logits.detach().mean(),
        }

    def discriminator_r1(
        self, real: torch.Tensor, real_c: torch.Tensor, gain: float
    ) -> dict[str, torch.Tensor]:
        """R1: (γ/2) ‖∇ₓD(x)‖² on real images (Mescheder et al. 2018).

        x is the image before augmentation: the gradient (and its backward) goes through the pipe.
        """
        real = real.detach().requires_grad_(True)
        logits = self.run_D(real, real_c, eager=True)
        self.observe_real(logits)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grads.square().sum([1, 2, 3])
        (logits[:, 0] * 0 + penalty * (self.g.r1_gamma / 2)).mean().mul(gain).backward()
        return {"r1_penalty": penalty.detach().mean()}


def lerp_ema(ema: torch.nn.Module, net: torch.nn.Module, beta: float) -> None:
    """``ema``'s parameters ← lerp(net's, ema's, ``beta``) and its buffers ← net's: the same
    arithmetic as one ``lerp`` per tensor, in a few multi-tensor kernels instead of two launches
    per parameter."""
    ema_params, params = list(ema.parameters()), list(net.parameters())
    ema_buffers, buffers = list(ema.buffers()), list(net.buffers())
    if len(ema_params) != len(params) or len(ema_buffers) != len(buffers):
        raise ValueError("lerp_ema: the two networks differ")
    with torch.no_grad():
        torch._foreach_copy_(ema_params, torch._foreach_lerp(params, ema_params, beta))
        if buffers:
            torch._foreach_copy_(ema_buffers, buffers)


def _phase(
    module: torch.nn.Module,
    opt: torch.optim.Optimizer,
    fn: Any,
    *args: Any,
    dist: DistInfo | None = None,
    graph: PhaseGraph | None = None,
) -> dict[str, torch.Tensor]:
    """Run one phase: gradients only for ``module`` (averaged over the processes under
    ``dist``; their inf/nan replaced), then an optimiser step. ``graph``: ``fn``'s
    :class:`PhaseGraph` (one process), which computes the same gradients."""
    if graph is not None:
        values = graph(*args)
    else:
        opt.zero_grad(set_to_none=True)
        values = phase_gradients(module, fn, *args, dist=dist)
    opt.step()
    return values


def training_step(
    loss: GanLoss,
    real: torch.Tensor,
    labels: torch.Tensor,
    c_dim: int,
    g: GanConfig,
) -> dict[str, torch.Tensor]:
    """One iteration: G main, G path length (lazy), D main, D R1 (lazy), then the EMA update.

    ``real`` (b, C, R, R) and ``labels`` (b,) are this process's share of the global batch
    (b = B / world; all B alone). The returned values are this process's means.
    """
    s, dist = loss.s, loss.dist
    batch, device = real.shape[0] * dist.world, real.device  # the global batch
    loss.begin_step(s.step)
    if c_dim:
        all_c = F.one_hot(loss.gather_rows(labels), c_dim).float()
    else:
        all_c = torch.zeros([batch, 0], device=device)
    real_c = loss.rows(all_c)
    do_pl = g.pl_weight > 0 and s.step % g.pl_interval == 0
    do_r1 = g.r1_gamma > 0 and s.step % g.r1_interval == 0
    # Fresh latents for every phase; generated labels follow the real batch's label distribution.
    zs = torch.randn([4 * batch, s.G.z_dim], device=device).split(batch)
    cs = [all_c[torch.randperm(batch, device=device)] for _ in range(4)]

    graph = loss.graphs.get
    values = _phase(
        s.G, s.opt_G, loss.generator_main, zs[0], cs[0], dist=dist, graph=graph("G_main")
    )
    if do_pl:
        values |= _phase(
            s.G, s.opt_G, loss.generator_pl, zs[1], cs[1], g.pl_interval, dist=dist,
            graph=graph("G_pl"),
        )  # fmt: skip
    values |= _phase(
        s.D, s.opt_D, loss.discriminator_main, real, real_c, zs[2], cs[2], dist=dist,
        graph=graph("D_main"),
    )  # fmt: skip
    if do_r1:
        values |= _phase(
            s.D, s.opt_D, loss.discriminator_r1, real, real_c, g.r1_interval, dist=dist,
            graph=graph("D_r1"),
        )  # fmt: skip

    # EMA of the generator weights; the half-life ramps up with the images seen so far.
    ema_nimg = g.ema_kimg * 1000
    if g.ema_rampup is not None:
        ema_nimg = min(ema_nimg, s.step * batch * g.ema_rampup)
    beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
    lerp_ema(s.G_ema, s.G, beta)
    s.step += 1
    if s.ada is not None:
        values |= s.ada.update(s.step)  # its sums are all-reduced: the same p everywhere
    return values


def _dataset_info(dataset: Dataset, g: GanConfig) -> tuple[int, list[str] | None]:
    """Image channels and class names; checks the resolution and the number of classes."""
    image = _first_image(dataset)
    if image.ndim != 3 or image.shape[1] != g.resolution or image.shape[2] != g.resolution:
        raise UserError(
            f"dataset images are {tuple(image.shape)}, but gan.resolution is {g.resolution}: "
            f"set data.resolution={g.resolution} (or gan.resolution to the image size)."
        )
    classes = list(getattr(dataset, "classes", None) or []) or None
    if g.c_dim and classes is not None and g.c_dim != len(classes):
        raise UserError(
            f"gan.c_dim={g.c_dim} but the dataset has {len(classes)} classes: "
            f"set gan.c_dim={len(classes)} (or 0 for an unconditional GAN)."
        )
    return image.shape[0], classes


def _first_image(dataset: Dataset) -> torch.Tensor:
    """The dataset's first image (C, H, W), once it is known to have a length and not be empty."""
    try:
        size = len(dataset)
    except TypeError:
        raise UserError("the training dataset must have a length.") from None
    if size == 0:
        raise UserError("the training dataset is empty.")
    return dataset[0][0]


def _image_size(dataset: Dataset) -> int:
    """The side of the dataset's (square) images."""
    return int(_first_image(dataset).shape[-1])


def _grid_inputs(
    G: Generator, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # Fixed latents (numpy, so the training RNG is untouched) and labels cycling over the classes.
    z = torch.from_numpy(np.random.RandomState(seed).randn(GRID_SIZE, G.z_dim)).float()
    c = torch.zeros([GRID_SIZE, G.c_dim])
    if G.c_dim:
        c[torch.arange(GRID_SIZE), torch.arange(GRID_SIZE) % G.c_dim] = 1
    return z.to(device), c.to(device)


def _snapshot_extra(state: GanState, cfg: Config, classes: list[str] | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"step": state.step, "kimg": state.step * cfg.gan.batch_size / 1000}
    if classes:
        extra["classes"] = classes
    return extra


def _best_distance(run: RunDir, key: str, step: int) -> float:
    """The distance of ``generator-best.safetensors`` when resuming at ``step`` (inf: none yet)."""
    path = run.checkpoints / BEST_FILE
    if not path.is_file():
        return math.inf
    extra = json.loads(read_metadata(path).get("viscoin.extra", "{}"))
    # A best saved after the resumed step belongs to a stretch that is trained again.
    return float(extra.get(key, math.inf)) if extra.get("step", math.inf) <= step else math.inf


def save_snapshot(
    state: GanState, run: RunDir, cfg: Config, classes: list[str] | None, grid: tuple
) -> None:
    """Generator (EMA), discriminator, resume state and a sample grid, each written atomically.

    The state file comes after the model files: it is the snapshot's commit record (it holds
    G_ema and D too), so a run stopped between the writes resumes from the previous state and
    :func:`_repair_snapshot` rewrites the model files that ran ahead of it.
    """
    _save_networks(state, run, cfg, classes)
    save_state(
        run.checkpoints / STATE_FILE,
        {
            "step": state.step,
            "G": state.G.state_dict(),
            "D": state.D.state_dict(),
            "G_ema": state.G_ema.state_dict(),
            "opt_G": state.opt_G.state_dict(),
            "opt_D": state.opt_D.state_dict(),
            "pl_mean": state.pl_mean.cpu(),
            "rng": rng_state(),
            **({"ada": state.ada.state_dict()} if state.ada is not None else {}),
            "ada_stall_since": -1 if state.ada_stall_since is None else state.ada_stall_since,
        },
    )
    with torch.no_grad():
        images = state.G_ema(*grid, noise_mode="const")
    save_image(
        image_grid(to_uint8(images, channels_last=True)),
        run.figures / f"samples-{state.step:06d}.png",
    )


def _save_networks(state: GanState, run: RunDir, cfg: Config, classes: list[str] | None) -> None:
    extra = _snapshot_extra(state, cfg, classes)
    save_generator(state.G_ema, run.checkpoints / GENERATOR_FILE, extra=extra)
    save_discriminator(state.D, run.checkpoints / DISCRIMINATOR_FILE, extra=extra)


def _repair_snapshot(state: GanState, run: RunDir, cfg: Config, classes: list[str] | None) -> None:
    """After a resume: the generator and discriminator files are the resumed state's."""
    files = (run.checkpoints / GENERATOR_FILE, run.checkpoints / DISCRIMINATOR_FILE)
    if any(checkpoint_step(path) != state.step for path in files):
        _save_networks(state, run, cfg, classes)


def _restore(state: GanState, path: Path, device: torch.device) -> None:
    saved = load_state(path, map_location=device)
    # the config's learning rates win over the saved ones (a resume may lower gan.lr), and the
    # device's choice of fused kernels over the saving device's
    keep = ("lr", "fused", "foreach")
    kept = [
        [{k: group[k] for k in keep} for group in opt.param_groups]
        for opt in (state.opt_G, state.opt_D)
    ]
    try:
        state.G.load_state_dict(saved["G"])
        state.D.load_state_dict(saved["D"])
        state.G_ema.load_state_dict(saved["G_ema"])
        state.opt_G.load_state_dict(saved["opt_G"])
        state.opt_D.load_state_dict(saved["opt_D"])
        for opt, values in zip((state.opt_G, state.opt_D), kept, strict=True):
            for group, own in zip(opt.param_groups, values, strict=True):
                group.update(own)
                if group["fused"]:  # fused kernels keep the step count on the parameter's device
                    for param in group["params"]:
                        moments = opt.state.get(param, {})
                        if "step" in moments:
                            moments["step"] = moments["step"].to(param.device, torch.float32)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(
            f"cannot resume from {path}: it does not match this configuration's networks "
            f"({str(exc).splitlines()[0][:200]}). Resume with the config the run was started with."
        ) from None
    state.pl_mean.copy_(saved["pl_mean"])
    state.step = int(saved["step"])
    if state.ada is not None and "ada" in saved:
        state.ada.load_state_dict(saved["ada"])
    since = int(saved.get("ada_stall_since", -1))
    state.ada_stall_since = None if since < 0 else since
    set_rng_state(saved["rng"])


def train_gan(
    cfg: Config,
    run: RunDir,
    dataset: Dataset,
    device: torch.device,
    resume: bool = False,
    progress: bool = True,
    init: InitSource | None = None,
    started: Callable[[], None] | None = None,
    dist: DistInfo | None = None,
) -> dict[str, Any]:
    """Train a StyleGAN2 on ``dataset`` (items ``(image (C, R, R) in [-1, 1], label)``).

    With ``gan.init_from`` (or ``init``, already loaded), G, D and G_ema start from that source
    and its architecture replaces the config's (see :mod:`viscoin.train.gan_init`).

    Writes ``checkpoints/{generator,discriminator}.safetensors`` and ``gan-training.state.pt`` every
    ``gan.snapshot_every`` steps and at the end, ``figures/samples-XXXXXX.png`` and
    ``metrics.jsonl``. Returns a summary (steps, final losses, paths).

    ``dist``: this process's place under torchrun (default: alone); ``device`` is then its own
    device (``dist.device``). Every process passes the same config, run directory and dataset;
    each trains on ``gan.batch_size / world`` images of every global batch, only rank 0 writes,
    and ``started`` is called on rank 0 only. Every process returns the same summary.
    """
    g = cfg.gan
    dist = dist if dist is not None else DistInfo(0, 1, 0, device)
    check_augment_config(g)
    check_quality_config(g)
    if init is None and g.init_from and not resume:  # a resume's networks come from its state
        init = load_init_source(g.init_from)
    if init is not None:
        apply_init_architecture(g, init)
        check_init_resolution(init, _image_size(dataset))
    check_batch(g, dist.world)
    img_channels, classes = _dataset_info(dataset, g)
    if device.type == "cuda":
        set_cuda_precision(g)
    # Early in training some activations and Adam moments are denormal floats, which CPUs process
    # tens of times slower; flushing them to zero changes nothing that matters here.
    flush_denormal = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        graphs = resolve_cuda_graphs(g.cuda_graphs, device, dist.world, g.compile)
        advice = (
            "--resume with --set gan.cuda_graphs=false (the CUDA graphs keep each phase's "
            "memory), or start again with a lower gan.batch_size"
            if graphs
            else "start again with a lower gan.batch_size"
        )
        advice += f" (now {g.batch_size}); the snapshot on disk is untouched"
        # compiled: torch.compile's caches in the run's compile-cache/, so that a resume with the
        # same shapes loads the graphs of the first start instead of compiling them again
        with (
            compile_cache(run.path / "compile-cache" if g.compile else None),
            out_of_memory_as_user_error(advice),
        ):
            return _train(
                cfg,
                run,
                dataset,
                device,
                dist,
                resume,
                img_channels,
                classes,
                progress,
                init,
                started,
                graphs,
            )
    finally:
        if flush_denormal:
            torch.set_flush_denormal(False)


def check_batch(g: GanConfig, world: int = 1) -> int:
    """The images per process of ``gan.batch_size`` (the global batch) over ``world`` processes;
    a :class:`UserError` naming the fix when the batch does not split into whole minibatch-std
    groups per process (or, with path lengths regularised, into even shares)."""
    batch, group = g.batch_size, g.mbstd_group_size
    if world == 1:
        group = min(group, batch)
        if batch < 1 or batch % group:
            raise UserError(
                f"gan.batch_size={batch} must be a multiple of gan.mbstd_group_size="
                f"{g.mbstd_group_size} (the discriminator's minibatch-std groups)."
            )
        return batch
    if batch % world:
        raise UserError(
            f"gan.batch_size={batch} is the global batch, split over {world} processes: it must "
            f"be divisible by {world}; set gan.batch_size to a multiple of {world}."
        )
    share = batch // world
    if share % group:
        raise UserError(
            f"gan.batch_size={batch} over {world} processes leaves {share} images per process, "
            f"not a multiple of gan.mbstd_group_size={group} (the minibatch-std groups live "
            f"inside one process): set gan.batch_size to a multiple of {world * group}, or "
            "gan.mbstd_group_size to a divisor of the per-process batch."
        )
    if g.pl_weight > 0 and share % 2:
        raise UserError(
            f"gan.batch_size={batch} over {world} processes leaves {share} images per process: "
            "path-length regularisation splits half the global batch evenly over the processes, "
            f"so each needs an even share; set gan.batch_size to a multiple of {2 * world} "
            "(or gan.pl_weight=0)."
        )
    return share


def _new_state(
    g: GanConfig, img_channels: int, device: torch.device, init: InitSource | None = None
) -> GanState:
    """Networks (G and D in training mode, frozen until their phase), fresh optimisers.

    The networks are freshly initialised, or copies of ``init``'s (D fresh when it has none).
    """
    G, D = build_networks(g, img_channels, g.c_dim)
    G_ema = None
    if init is not None:
        if init.G_ema.img_channels != img_channels:
            raise UserError(
                f"--init-from {init.path} makes {init.G_ema.img_channels}-channel images but the "
                f"dataset's have {img_channels}: start from a network trained on such images."
            )
        G, G_ema = copy.deepcopy(init.G), copy.deepcopy(init.G_ema).to(device)
        D = copy.deepcopy(init.D) if init.D is not None else D
    G, D = G.train().requires_grad_(False).to(device), D.train().requires_grad_(False).to(device)
    fused = device.type == "cuda"
    spec = check_augment_config(g)
    pipe = AugmentPipe(p=spec.p).to(device) if spec.mode != "none" else None
    ada = None
    if spec.mode == "ada":
        ada = AdaTuner(pipe, g.ada_target, g.ada_kimg, g.ada_interval, batch=g.batch_size)
    return GanState(
        G=G,
        D=D,
        G_ema=(G_ema if G_ema is not None else copy.deepcopy(G)).eval().requires_grad_(False),
        opt_G=lazy_adam(
            G.parameters(), g.lr, g.betas, g.pl_interval if g.pl_weight > 0 else None, fused
        ),
        opt_D=lazy_adam(
            D.parameters(), g.lr, g.betas, g.r1_interval if g.r1_gamma > 0 else None, fused
        ),
        pl_mean=torch.zeros([], device=device),
        augment_pipe=pipe,
        ada=ada,
    )


class DivergenceWatch:
    """Remembers the first step whose losses were not finite, on the device (no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.full([], -1, dtype=torch.int64, device=device)
        self.last_finite_snapshot: int | None = None

    def observe(self, step: int, values: dict[str, torch.Tensor]) -> None:
        finite = torch.stack([v.float() for v in values.values()]).isfinite().all()
        self.first_bad = torch.where(~finite & (self.first_bad < 0), step, self.first_bad)

    def check(
        self,
        state: GanState,
        run: RunDir,
        g: GanConfig,
        weights: bool = False,
        dist: DistInfo | None = None,
    ) -> None:
        """Raise if a loss was non-finite (or, with ``weights``, a weight of G_ema, G or D is).

        Under ``dist`` every process must call it at the same step: one all-reduce tells every
        process of a divergence any of them saw, so all of them stop together.
        """
        first_bad, weights_ok = self.first_bad, None
        if weights:
            nets = (state.G_ema, state.G, state.D)
            finite = [t.isfinite().all() for net in nets for t in net.state_dict().values()]
            weights_ok = torch.stack(finite).all().long()
        if dist is not None and dist.enabled:
            # min over the processes of (first bad step, or "none" as a large number; weights ok)
            none = torch.iinfo(torch.int64).max
            ok = weights_ok if weights_ok is not None else torch.ones_like(first_bad)
            flags = torch.stack([torch.where(first_bad < 0, none, first_bad), ok])
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
            first_bad = torch.where(flags[0] == none, -1, flags[0])
            weights_ok = flags[1] if weights else None
        step, what = int(first_bad), "losses"
        if step < 0 and weights_ok is not None and not bool(weights_ok):
            step, what = state.step, "weights"
        if step < 0:
            return
        kept = (
            f"the last finite snapshot (step {self.last_finite_snapshot}) is kept in {run.checkpoints}"
            if self.last_finite_snapshot is not None
            else "no snapshot had been written yet"
        )
        raise UserError(
            f"GAN training diverged: non-finite {what} at step {step}; {kept}. Lower gan.lr "
            f"(now {g.lr}) or raise gan.r1_gamma (now {g.r1_gamma}), then start again or --resume."
        )


def check_ada_stall(state: GanState, g: GanConfig, values: dict[str, torch.Tensor]) -> None:
    """Stop when ADA has held p at 1 for ``gan.ada_stall_kimg`` with r_t still above the target:
    augmentation can no longer keep D from overfitting (StyleGAN2-ADA's signal that the data are
    too few for this long a run). Checked only at ADA's adjustments (one host sync each). Under
    torchrun r_t (all-reduced) and p are the same on every process: all of them stop together."""
    if state.ada is None or "ada_rt" not in values or not g.ada_stall_kimg > 0:
        return
    rt = float(values["ada_rt"])
    if not (float(state.augment_pipe.p) >= 1 and rt > g.ada_target):
        state.ada_stall_since = None
        return
    if state.ada_stall_since is None:
        state.ada_stall_since = state.step
    kimg = (state.step - state.ada_stall_since) * g.batch_size / 1000
    if kimg >= g.ada_stall_kimg:
        raise AdaStalled(
            f"ADA has held p at 1 for {kimg:g} kimg (since step {state.ada_stall_since}) and D "
            f"still wins (r_t = {rt:.3f} > gan.ada_target={g.ada_target}) at step {state.step}: "
            "the discriminator overfits the training images. Use more training images or fewer "
            "gan.kimg (gan.ada_stall_kimg=0 turns this stop off)."
        )


class AdaStalled(UserError):
    """Training stopped: ADA's p is at 1 and D keeps winning."""


class _Averages:
    """Means of the per-step values since the last log line, kept as tensors (no GPU sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def pop(self, dist: DistInfo | None = None) -> dict[str, float]:
        """The means since the last call; under ``dist`` also averaged over the processes (one
        all-reduce; every process holds an equal share of each batch)."""
        if dist is not None and dist.enabled:
            keys = sorted(self.sums)
            means = torch.stack([torch.as_tensor(self.sums[k]).double() for k in keys])
            means /= torch.tensor([self.counts[k] for k in keys], device=means.device)
            torch.distributed.all_reduce(means)
            result = dict(zip(keys, (means / dist.world).tolist(), strict=True))
        else:
            result = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return result


def _train(
    cfg: Config,
    run: RunDir,
    dataset: Dataset,
    device: torch.device,
    dist: DistInfo,
    resume: bool,
    img_channels: int,
    classes: list[str] | None,
    progress: bool = True,
    init: InitSource | None = None,
    started: Callable[[], None] | None = None,
    graphs: bool = False,
) -> dict[str, Any]:
    g = cfg.gan
    main = dist.is_main
    seed_everything(cfg.run.seed)
    state = _new_state(g, img_channels, device, init)
    logger = MetricsLogger(run.metrics, enabled=main)
    if resume:  # every process restores the same state
        _restore(state, run.checkpoints / STATE_FILE, device)
        if dist.enabled and device.type == "cuda":
            # Each process draws on its own GPU: all of them continue rank 0's stream.
            rank0_rng = broadcast_object(torch.cuda.get_rng_state(device), dist)
            torch.cuda.set_rng_state(rank0_rng, device)
        if main:
            _repair_snapshot(state, run, cfg, classes)
            logger.truncate_after(state.step)
            cfg.save(run.config)  # the resumed run's settings, once its state and log have loaded
    if started is not None and main:  # once the run has started (a resume: state and log loaded)
        started()

    total_steps = max(1, round(g.kimg * 1000 / g.batch_size))
    sampler = InfiniteBatches(
        len(dataset), g.batch_size, cfg.run.seed, state.step, dist.rank, dist.world
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.run.seed),  # keeps the global RNG untouched
    )
    grid = _grid_inputs(state.G, cfg.run.seed, device)
    loss = GanLoss(state, g, seed=cfg.run.seed, dist=dist)
    if graphs:  # resolve_cuda_graphs, by train_gan
        loss.use_cuda_graphs()
    elif g.cuda_graphs is True and main:  # asked for explicitly, on another device than CUDA
        warnings.warn(
            UserNotice(f"gan.cuda_graphs needs a CUDA device: training on {device} without them"),
            stacklevel=2,
        )
    averages, last = _Averages(), {}
    watch = DivergenceWatch(device)
    if resume:
        watch.last_finite_snapshot = state.step
    monitor, best = None, math.inf
    if g.metric_every and main:
        with _own_rng(device):  # building its feature network must not draw training numbers
            monitor = QualityMonitor(g, dataset, state.G_ema, device, cfg.run.seed)
        best = _best_distance(run, monitor.fd_key, state.step) if resume else math.inf
    start, t0 = state.step, time.time()
    batches = iter(loader)
    with tqdm(
        total=total_steps,
        initial=start,
        desc="train gan",
        unit="step",
        disable=not (progress and main),
    ) as bar:
        while state.step < total_steps:
            real, labels = next(batches)
            real = real.to(device, torch.float32, non_blocking=True)
            labels = torch.as_tensor(labels, device=device).long()
            values = training_step(loss, real, labels, g.c_dim, g)
            watch.observe(state.step, values)
            averages.add(values)
            bar.update(1)
            if state.step % g.log_every == 0 or state.step == total_steps:
                watch.check(state, run, g, dist=dist)
                last = averages.pop(dist)
                timing = {
                    "kimg": state.step * g.batch_size / 1000,
                    "sec_per_step": (time.time() - t0) / max(state.step - start, 1),
                }
                if state.augment_pipe is not None:
                    timing["augment_p"] = float(state.augment_pipe.p)
                logger.log(state.step, {**last, **timing})
                bar.set_postfix(loss_G=f"{last['loss_G']:.3f}", loss_D=f"{last['loss_D']:.3f}")
            try:
                check_ada_stall(state, g, values)
            except AdaStalled:
                watch.check(state, run, g, weights=True, dist=dist)
                if main:  # the networks are fine: keep them
                    save_snapshot(state, run, cfg, classes, grid)
                barrier(dist)  # no process leaves before the snapshot is written
                raise
            if g.metric_every and (state.step % g.metric_every == 0 or state.step == total_steps):
                watch.check(state, run, g, weights=True, dist=dist)
                if monitor is not None:
                    with _own_rng(device):
                        quality = monitor.measure(state.G_ema)
                    logger.log(state.step, quality)
                    if quality[monitor.fd_key] < best:
                        best = quality[monitor.fd_key]
                        extra = {**_snapshot_extra(state, cfg, classes), **quality}
                        save_generator(state.G_ema, run.checkpoints / BEST_FILE, extra=extra)
                barrier(dist)  # the other processes wait for rank 0's measurement
            if state.step % g.snapshot_every == 0 and state.step < total_steps:
                # never overwrite a snapshot with NaNs
                watch.check(state, run, g, weights=True, dist=dist)
                if main:
                    save_snapshot(state, run, cfg, classes, grid)
                barrier(dist)
                watch.last_finite_snapshot = state.step
            if g.max_minutes and _time_is_up(t0, g.max_minutes, dist):
                if main:
                    bar.write(f"time budget of {g.max_minutes} min reached at step {state.step}")
                break
    watch.check(state, run, g, weights=True, dist=dist)
    if main:
        save_snapshot(state, run, cfg, classes, grid)
    barrier(dist)
    logger.close()
    return {
        "steps": state.step,
        "kimg": state.step * g.batch_size / 1000,
        "seconds": time.time() - t0,
        **{k: last[k] for k in ("loss_G", "loss_D") if k in last},
        "generator": str(run.checkpoints / GENERATOR_FILE),
    }


def _own_rng(device: torch.device) -> Any:
    """A context in which the global RNG may be used without changing the training draws."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _time_is_up(t0: float, minutes: float, dist: DistInfo) -> bool:
    """Whether ``minutes`` have passed since ``t0``; under torchrun rank 0's clock decides for
    every process (one broadcast), so that all of them stop after the same step."""
    up = time.time() - t0 > 60 * minutes
    if dist.enabled:
        flag = torch.tensor(float(up), device=dist.device)
        torch.distributed.broadcast(flag, src=0)
        up = bool(flag)
    return up
