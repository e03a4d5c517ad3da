"""viscoin's GAN training step against NVIDIA's StyleGAN2-ADA, from the same weights and batches.

The official code is not part of this project: give a checkout of NVlabs/stylegan2-ada-pytorch
with ``--official DIR``. Its reference (non-CUDA) ops are used, so nothing is compiled.

``steps``: both training loops (the four phases G main, G path length, D main, D R1, Adam with the
lazy-regularisation rescaling, the EMA) run side by side on CPU from the same initial weights,
the same real batches and the same random draws; after every step the largest relative
difference of G, D and G_ema parameters is printed. A defect of either loop shows up as a
difference that grows; rounding stays near float32's 1e-7..1e-5.

``collapse``: one loop (``--impl viscoin|official``) trains a full-width 32 px StyleGAN2 with
StyleGAN2-ADA's ``--cfg auto`` values on a folder dataset (``benchmarks/real_digits.py export``)
from a seeded initialisation and seeded batches, and every ``--every`` steps reports how many
classes its samples cover under a small CNN trained on the same images, the pixel diversity of
the samples relative to real images, and D's mean logits. Run it once per implementation to
compare how the two train on the same data.

``speed``: seconds per kimg of each loop (``--impl viscoin official``) at the 'auto' settings of
each ``--res``, on random images, each loop alone on the device; ``--official-ops cuda`` lets the
official code build its CUDA ops (it falls back to its reference ops by itself when it cannot),
``--fp16-res 4`` runs both with float16 in the 4 highest resolutions as ``--cfg auto`` does,
``--profile DIR`` writes each loop's operators ranked by device time (and its kernels per step);
``viscoin-graphs`` is viscoin's loop with ``gan.cuda_graphs``, ``--fir conv|pool|matmul`` its FIR filters
as depthwise convolutions, poolings or matrix products (``auto``: matrix products on CUDA).

``graphs`` (CUDA): viscoin's loop with ``gan.cuda_graphs`` against the eager loop from the same
weights, batches and draws, every phase (R1 and path length every 2 steps, augmentation on)
captured and replayed, cuDNN's deterministic algorithms; the losses of every step and the distance
of the weights are printed beside those of two eager runs (the device's own run-to-run rounding),
and the command fails when the weights differ by more than 10× that (or 1e-4).

    python benchmarks/gan_vs_official.py steps --official ~/stylegan2-ada-pytorch
    python benchmarks/gan_vs_official.py speed --impl viscoin official --official ~/stylegan2-ada-pytorch
    python benchmarks/gan_vs_official.py graphs --res 32 --fp16-res 4
    python benchmarks/gan_vs_official.py collapse --impl official --official ~/stylegan2-ada-pytorch \\
        --data runs/digits-data --out official.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from viscoin.config import GanConfig, auto_gan_settings, load_config
from viscoin.models.stylegan2.ops import use_fir_impl
from viscoin.train import gan as vg


def official_modules(root: Path, reference_ops: bool = True) -> tuple[Any, Any]:
    """(networks, loss) modules of the official code at ``root``; ``reference_ops``: its
    reference implementations, else it builds its CUDA ops itself (where it can)."""
    if not (root / "training" / "networks.py").is_file():
        sys.exit(f"error: {root} is not a stylegan2-ada-pytorch checkout (no training/networks.py)")
    sys.path.insert(0, str(root))
    warnings.filterwarnings("ignore")
    from torch_utils.ops import bias_act, upfirdn2d

    if reference_ops:  # no plugin build: the reference implementations
        upfirdn2d._inited = bias_act._inited = True
    from training import loss, networks

    return networks, loss


class OfficialLoop:
    """StyleGAN2-ADA's training_loop.py step on one process: phases, Adam, EMA (no augmentation)."""

    def __init__(
        self,
        root: Path,
        g: GanConfig,
        G: nn.Module,
        D: nn.Module,
        channels: int,
        reference_ops: bool = True,
    ) -> None:
        networks, loss = official_modules(root, reference_ops)
        common = {
            "channel_base": g.channel_base,
            "channel_max": g.channel_max,
            "num_fp16_res": g.num_fp16_res,
            "conv_clamp": g.conv_clamp,
        }
        device = next(G.parameters()).device
        self.G = networks.Generator(
            z_dim=g.z_dim,
            c_dim=0,
            w_dim=g.w_dim,
            img_resolution=g.resolution,
            img_channels=channels,
            mapping_kwargs={"num_layers": g.mapping_layers},
            synthesis_kwargs=common,
        ).to(device)
        self.D = networks.Discriminator(
            c_dim=0,
            img_resolution=g.resolution,
            img_channels=channels,
            epilogue_kwargs={"mbstd_group_size": g.mbstd_group_size},
            **common,
        ).to(device)
        self.G.load_state_dict(G.state_dict())
        self.D.load_state_dict(D.state_dict())
        self.G.train().requires_grad_(False)
        self.D.train().requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.loss = loss.StyleGAN2Loss(
            device,
            self.G.mapping,
            self.G.synthesis,
            self.D,
            style_mixing_prob=g.style_mixing,
            r1_gamma=g.r1_gamma,
            pl_weight=g.pl_weight,
        )
        self.g, self.phases, self.step = g, [], 0
        for name, module, interval in (("G", self.G, g.pl_interval), ("D", self.D, g.r1_interval)):
            ratio = interval / (interval + 1)
            opt = torch.optim.Adam(
                module.parameters(), lr=g.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8
            )
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]

    def __call__(self, real: torch.Tensor) -> None:
        g, batch = self.g, real.shape[0]
        c = torch.zeros([batch, 0], device=real.device)
        zs = torch.randn([4 * batch, g.z_dim], device=real.device).split(batch)
        for _ in range(4):  # the label permutations viscoin draws (no effect without labels)
            torch.randperm(batch, device=real.device)
        for (name, module, opt, interval), z in zip(self.phases, zs, strict=True):
            if self.step % interval:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self.loss.accumulate_gradients(name, real, c, z, c, True, interval)
            module.requires_grad_(False)
            for p in module.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
        ema_nimg = g.ema_kimg * 1000
        if g.ema_rampup is not None:  # None (the paper presets): no ramp-up, as training_loop.py
            ema_nimg = min(ema_nimg, self.step * batch * g.ema_rampup)
        beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                b_ema.copy_(b)
        self.step += 1


class ViscoinLoop:
    """viscoin's :func:`viscoin.train.gan.training_step` on the same networks."""

    def __init__(
        self, g: GanConfig, G: nn.Module, D: nn.Module, channels: int, graphs: bool = False
    ) -> None:
        device = next(G.parameters()).device
        self.state = vg._new_state(g, channels, device)
        self.state.G.load_state_dict(G.state_dict())
        self.state.D.load_state_dict(D.state_dict())
        self.state.G_ema.load_state_dict(G.state_dict())
        self.loss, self.g = vg.GanLoss(self.state, g), g
        if graphs:
            self.loss.use_cuda_graphs()
        self.G, self.D, self.G_ema = self.state.G, self.state.D, self.state.G_ema

    def __call__(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = torch.zeros(real.shape[0], dtype=torch.long, device=real.device)
        return vg.training_step(self.loss, real, labels, 0, self.g)


def largest_relative_difference(a: nn.Module, b: nn.Module) -> tuple[float, str]:
    """max over parameters of max|a - b| / max|b|, and the parameter where it is."""
    worst, where = 0.0, ""
    for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        d = float((x - y).abs().max() / (y.abs().max() + 1e-30))
        if d > worst:
            worst, where = d, name
    return worst, where


def relative_distance(a: nn.Module, b: nn.Module) -> float:
    """‖a − b‖ / ‖b‖ over all parameters together."""
    pairs = list(zip(a.parameters(), b.parameters(), strict=True))
    diff = sum(float((x - y).double().square().sum()) for x, y in pairs)
    norm = sum(float(y.double().square().sum()) for _, y in pairs)
    return math.sqrt(diff / max(norm, 1e-300))


def compare_steps(root: Path, steps: int, ema_rampup: float | None = 0.05) -> list[dict[str, Any]]:
    """Both loops side by side on a small 16 px StyleGAN2 with every phase on a short interval
    (``ema_rampup=None``: the EMA without ramp-up, as the paper presets train)."""
    g = GanConfig(
        resolution=16,
        z_dim=32,
        w_dim=32,
        channel_base=512,
        channel_max=32,
        batch_size=8,
        mbstd_group_size=4,
        r1_gamma=0.5,
        r1_interval=4,
        pl_weight=2.0,
        pl_interval=2,
        style_mixing=0.9,
        ema_kimg=0.05,
        ema_rampup=ema_rampup,
        augment="none",
    )
    torch.manual_seed(0)
    G, D = vg.build_networks(g, 3, 0)
    ours, theirs = ViscoinLoop(g, G, D, 3), OfficialLoop(root, g, G, D, 3)
    data = torch.rand(64, 3, 16, 16) * 2 - 1
    rows = []
    for step in range(steps):
        pick = torch.randint(
            0, len(data), (g.batch_size,), generator=torch.Generator().manual_seed(step)
        )
        for loop in (ours, theirs):
            torch.manual_seed(1000 + step)  # the same draws for both
            loop(data[pick])
        row = {"step": step}
        for key, a, b in (
            ("G", ours.G, theirs.G),
            ("D", ours.D, theirs.D),
            ("G_ema", ours.G_ema, theirs.G_ema),
        ):
            row[key], row[key + "_where"] = largest_relative_difference(a, b)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


TINY = {"z_dim": 32, "w_dim": 32, "channel_base": 256, "channel_max": 32, "batch_size": 8}


class DigitClassifier(nn.Module):
    """A small CNN that scores which classes a generator's samples cover."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] → logits (B, classes)."""
        return self.head(self.features(x))


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int = 15) -> nn.Module:
    torch.manual_seed(1)
    f = DigitClassifier(images.shape[1], int(labels.max()) + 1).to(images.device)
    opt = torch.optim.Adam(f.parameters(), 1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(images), device=images.device)
        for pick in order.split(128):
            x = images[pick] + 0.1 * torch.randn_like(images[pick])
            loss = F.cross_entropy(f(x), labels[pick])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return f.eval()


def pixel_diversity(x: torch.Tensor) -> float:
    """Mean RMS pixel distance between pairs of images (B, C, H, W)."""
    x = x.flatten(1).float()
    n = x.shape[0]
    return float((torch.cdist(x, x) / math.sqrt(x.shape[1])).sum() / (n * (n - 1)))


def collapse(a: argparse.Namespace) -> None:
    device = torch.device(a.device)
    cfg = load_config(None, ["data.name=folder", f"data.root={a.data}", f"data.resolution={a.res}"])
    from viscoin.data import build_dataset

    dataset = build_dataset(cfg.data, "train", augment=False)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])[:, : a.channels].to(device)
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))], device=device)
    f = train_classifier(images, labels, epochs=1 if a.tiny else 15)
    with torch.no_grad():
        accuracy = float((f(images).argmax(1) == labels).float().mean())
    classes = int(labels.max()) + 1

    g = GanConfig(**{**auto_gan_settings(a.res), "resolution": a.res, "augment": "none"})
    if a.tiny:  # a smoke-test size
        g = GanConfig(**{**vars(g), **TINY})
    for name in ("r1_gamma", "mbstd_group_size", "channel_base", "lr", "batch_size"):
        if getattr(a, name) is not None:  # a recipe other than 'auto'
            setattr(g, name, getattr(a, name))
    if device.type == "cuda":
        vg.set_cuda_precision(g)
    torch.manual_seed(a.seed)
    G, D = vg.build_networks(g, a.channels, 0)
    G, D = G.to(device), D.to(device)
    if a.impl == "official":
        if a.official is None:
            sys.exit(
                "error: --impl official needs --official DIR (a stylegan2-ada-pytorch checkout)"
            )
        loop = OfficialLoop(a.official, g, G, D, a.channels)
    else:
        loop = ViscoinLoop(g, G, D, a.channels)

    real_diversity = pixel_diversity(images[:64])
    z_fixed = (
        torch.from_numpy(np.random.RandomState(123).randn(a.samples, g.z_dim)).float().to(device)
    )

    def coverage(net: nn.Module, noise: str) -> dict[str, Any]:
        with torch.no_grad():
            empty = torch.zeros([len(z_fixed), 0], device=device)
            fake = torch.cat(
                [net(z, empty[: len(z)], noise_mode=noise) for z in z_fixed.split(250)]
            )
            shares = torch.bincount(f(fake.clamp(-1, 1)).argmax(1), minlength=classes) / len(fake)
        return {
            "diversity": round(pixel_diversity(fake[:64]) / real_diversity, 3),
            "largest_class": round(float(shares.max()), 3),
            "classes_at_5pct": int((shares >= 0.05).sum()),
        }

    rows: list[dict[str, Any]] = []

    def log(row: dict[str, Any]) -> None:
        print(json.dumps(row), flush=True)
        rows.append(row)
        if a.out:  # rewritten whole after each row: a run cut short keeps what it measured
            a.out.write_text("".join(json.dumps(r) + "\n" for r in rows))

    log({"impl": a.impl, "classifier_train_accuracy": round(accuracy, 3), "gan": vars(g)})
    batches = torch.Generator(device=device).manual_seed(a.seed)
    t0 = time.time()
    for step in range(a.steps + 1):
        if step % a.every == 0 or step == a.steps:
            with torch.no_grad():
                z = torch.randn(64, g.z_dim, device=device)
                empty = torch.zeros([64, 0], device=device)
                d_real = float(loop.D(images[:64], empty).mean())
                d_fake = float(loop.D(loop.G(z, empty), empty).mean())
            log(
                {
                    "step": step,
                    "kimg": step * g.batch_size / 1000,
                    "G_ema": coverage(loop.G_ema, "const"),
                    "G": coverage(loop.G, "random"),
                    "D_real": round(d_real, 2),
                    "D_fake": round(d_fake, 2),
                    "seconds": round(time.time() - t0, 1),
                }
            )
        if step == a.steps:
            break
        pick = torch.randint(0, len(images), (g.batch_size,), generator=batches, device=device)
        loop(images[pick])


def speed(a: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds per kimg of each loop at StyleGAN2-ADA's 'auto' settings, on random images (the
    data pipeline is not timed), one resolution after the other, each loop alone on the device."""
    device = torch.device(a.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = []
    for res in a.res:
        g = GanConfig(**{**auto_gan_settings(res), "resolution": res, "augment": a.augment})
        if a.tiny:
            g = GanConfig(**{**vars(g), **TINY})
        g.compile = a.compile
        if a.fp16_res:  # train.py's --cfg auto: float16 in the 4 highest resolutions, clamp 256
            g.num_fp16_res, g.conv_clamp = a.fp16_res, 256.0
        if device.type == "cuda":
            vg.set_cuda_precision(g)
        for impl in a.impl:
            torch.manual_seed(0)
            G, D = vg.build_networks(g, 3, 0)
            G, D = G.to(device), D.to(device)
            if impl == "official":
                loop = OfficialLoop(a.official, g, G, D, 3, reference_ops=a.official_ops == "ref")
            else:
                loop = ViscoinLoop(g, G, D, 3, graphs=impl == "viscoin-graphs")
            real = torch.rand(g.batch_size, 3, res, res, device=device) * 2 - 1
            t_warm = time.perf_counter()
            for _ in range(a.warmup):
                loop(real)
            sync()
            warmup_s = time.perf_counter() - t_warm
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            for _ in range(a.steps):
                loop(real)
            sync()
            seconds = (time.perf_counter() - t0) / a.steps
            row = {
                "impl": impl,
                "resolution": res,
                "augment": g.augment,
                **({"fir": a.fir} if impl.startswith("viscoin") else {}),
                "batch": g.batch_size,
                "num_fp16_res": g.num_fp16_res,
                **({"compile": True} if impl.startswith("viscoin") and g.compile else {}),
                "ms_per_step": round(1000 * seconds, 2),
                "s_per_kimg": round(seconds * 1000 / g.batch_size, 3),
                "warmup_s": round(warmup_s, 1),
            }
            if a.profile:  # where the time goes: one more stretch of steps under the profiler
                row["profile"] = str(
                    profile_steps(loop, real, a.profile, impl, res, a.steps, device)
                )
            if impl == "official":
                row["official_ops"] = a.official_ops
            if device.type == "cuda":
                row["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.out:
                a.out.write_text(json.dumps(rows, indent=1) + "\n")
            del loop, G, D
    return rows


def graphs_check(a: argparse.Namespace) -> dict[str, Any]:
    """viscoin's loop with CUDA graphs against the eager loop (and the eager loop against itself:
    the device's run-to-run rounding), from the same weights, batches and random draws."""
    device = torch.device("cuda")
    g = GanConfig(**{**auto_gan_settings(a.res), "resolution": a.res, "augment": a.augment})
    g.r1_interval = g.pl_interval = 2  # every phase captured and then replayed within the run
    if a.fp16_res:
        g.num_fp16_res, g.conv_clamp = a.fp16_res, 256.0
    vg.set_cuda_precision(g)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    torch.manual_seed(0)
    G, D = vg.build_networks(g, 3, 0)
    G, D = G.to(device), D.to(device)
    reals = torch.rand(a.steps, g.batch_size, 3, a.res, a.res, device=device) * 2 - 1

    def run(graphs: bool) -> tuple[ViscoinLoop, list[float]]:
        torch.manual_seed(1)
        loop = ViscoinLoop(g, G, D, 3, graphs=graphs)
        if loop.state.augment_pipe is not None:
            loop.state.augment_pipe.p.fill_(0.5)
        losses = []
        for real in reals:
            values = loop(real)
            losses.append(float(values["loss_G"]) + float(values["loss_D"]))
        return loop, losses

    eager, eager_losses = run(False)
    again, again_losses = run(False)
    graphed, graph_losses = run(True)
    row: dict[str, Any] = {"resolution": a.res, "steps": a.steps, "augment": g.augment}
    for net in ("G", "D", "G_ema"):
        null = relative_distance(getattr(again, net), getattr(eager, net))
        diff = relative_distance(getattr(graphed, net), getattr(eager, net))
        row[net] = {"graphs_vs_eager": diff, "eager_vs_eager": null}
    row["losses"] = {"eager": eager_losses, "eager_again": again_losses, "graphs": graph_losses}
    row["calls"] = {name: graph.calls for name, graph in graphed.loss.graphs.items()}
    bound = max(10 * max(row[n]["eager_vs_eager"] for n in ("G", "D", "G_ema")), 1e-4)
    row["ok"] = all(row[n]["graphs_vs_eager"] <= bound for n in ("G", "D", "G_ema"))
    print(json.dumps(row), flush=True)
    if a.out:
        a.out.write_text(json.dumps(row, indent=1) + "\n")
    return row


def profile_steps(
    loop: Any,
    real: torch.Tensor,
    folder: Path,
    impl: str,
    res: int,
    steps: int,
    device: torch.device,
) -> Path:
    """Run ``steps`` more steps under ``torch.profiler`` and write the operators ranked by their
    own device time (CPU time on a CPU) and the number of kernels launched per step to
    ``folder/profile-IMPL-RES.txt``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            loop(real)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    lines = [f"{impl} {res} px, {steps} steps"]
    if device.type == "cuda":
        kernels = sum(e.count for e in events if getattr(e.device_type, "name", "") == "CUDA")
        lines.append(f"kernels launched per step: {kernels / steps:.0f}")
    lines.append(events.table(sort_by=key, row_limit=40))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"profile-{impl}-{res}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("steps", help="both loops side by side, step by step (CPU)")
    p.add_argument("--official", type=Path, required=True)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--no-ema-rampup", action="store_true", help="the EMA without ramp-up")
    p.add_argument("--json", type=Path)
    p = sub.add_parser("collapse", help="one loop on a folder dataset, class coverage over time")
    p.add_argument("--impl", choices=("viscoin", "official"), default="viscoin")
    p.add_argument("--official", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--r1-gamma", type=float)
    p.add_argument("--mbstd-group-size", type=int)
    p.add_argument("--channel-base", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path)
    p.add_argument("--tiny", action="store_true", help="small networks and batch (smoke test)")
    p = sub.add_parser("speed", help="seconds per kimg of each loop, 'auto' settings")
    p.add_argument(
        "--impl", nargs="+", choices=("viscoin", "viscoin-graphs", "official"), default=["viscoin"]
    )
    p.add_argument("--official", type=Path)
    p.add_argument(
        "--official-ops",
        choices=("cuda", "ref"),
        default="cuda",
        help="cuda: the official code builds its CUDA ops (falling back by itself)",
    )
    p.add_argument("--res", type=int, nargs="+", default=[32, 64, 256])
    p.add_argument("--fp16-res", type=int, default=0, help="float16 resolutions (auto: 4)")
    p.add_argument("--compile", action="store_true", help="viscoin's loop with gan.compile")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path)
    p.add_argument("--tiny", action="store_true", help="small networks and batch (smoke test)")
    p.add_argument("--profile", type=Path, help="also profile each loop: tables in this folder")
    p.add_argument("--augment", default="none", help="viscoin's gan.augment (NVIDIA's: none)")
    p.add_argument(
        "--fir", default="auto", choices=("auto", "conv", "pool", "matmul"), help="viscoin's FIR"
    )
    p = sub.add_parser("graphs", help="gan.cuda_graphs against the eager loop (CUDA)")
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--fp16-res", type=int, default=0)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--augment", default="fixed:0.5")
    p.add_argument("--out", type=Path)
    a = parser.parse_args(argv)
    if a.command == "graphs":
        return 0 if graphs_check(a)["ok"] else 1
    if a.command == "speed" and "official" in a.impl and a.official is None:
        parser.error("--impl official needs --official DIR (a stylegan2-ada-pytorch checkout)")
    if a.command == "speed":
        with use_fir_impl(a.fir):
            speed(a)
        return 0
    if a.command == "steps":
        rows = compare_steps(a.official, a.steps, None if a.no_ema_rampup else 0.05)
        if a.json:
            a.json.write_text(json.dumps(rows, indent=1) + "\n")
        worst = max(max(r["G"], r["D"], r["G_ema"]) for r in rows)
        print(f"largest relative difference over {a.steps} steps: {worst:.2e}")
        return 0 if worst <= a.tolerance else 1
    collapse(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
