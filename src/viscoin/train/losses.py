"""The VisCoIN objective (METHOD.md §2), one small function per term.

L = L_of + L_rec + L_spar + L_orth + L_w, with f and G frozen and Ψ, Θ, Ω trained. Every term is a
mean over its elements, so gradient accumulation and data-parallel training only rescale by 1/N.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from viscoin.errors import UserError
from viscoin.utils.checkpoint import load_state_dict_file


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """CE(a, b) = mean_batch −Σ_c softmax(b)_c · log_softmax(a)_c, with b detached. (B, C) → ()."""
    target = F.softmax(target_logits.detach().float(), dim=-1)
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def output_fidelity_loss(
    g_logits: torch.Tensor, f_logits: torch.Tensor, alpha: float
) -> torch.Tensor:
    """L_of = α · CE(g(x), f(x))."""
    return alpha * soft_cross_entropy(g_logits, f_logits)


def pixel_losses(
    reconstruction: torch.Tensor, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(MSE, L1) between (B, 3, H, W) images, means over all elements."""
    diff = reconstruction.float() - images.float()
    return diff.square().mean(), diff.abs().mean()


def sparsity_loss(
    activations: torch.Tensor, concept_maps: torch.Tensor, delta: float
) -> torch.Tensor:
    """L_spar = δ · (mean|a/‖a‖₂| + mean|Φ|); a (B, K), Φ (B, K, 3, 3)."""
    normalised = activations / activations.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return delta * (normalised.abs().mean() + concept_maps.abs().mean())


def orthogonality_loss(weight: torch.Tensor) -> torch.Tensor:
    """L_orth = (Σ_kl (ŴŴᵀ)_kl − K) / K², Ŵ = |row-normalised weight| (K, D)."""
    k = weight.shape[0]
    w_hat = F.normalize(weight.flatten(1), dim=1).abs()
    return ((w_hat @ w_hat.T).sum() - k) / k**2


def feature_distance(
    maps: list[torch.Tensor] | tuple[torch.Tensor, ...],
    target_maps: list[torch.Tensor] | tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """Perceptual distance on a network's feature maps, LPIPS's formula without learned weights.

    Each map (B, C_l, H_l, W_l) is unit-normalised over channels at every position; the distance is
    Σ_l mean_{b,h,w} ‖m̂_l − t̂_l‖² (targets detached), a scalar in [0, 4 · layers].
    """
    total = maps[0].new_zeros((), dtype=torch.float32)
    for m, t in zip(maps, target_maps, strict=True):
        a = F.normalize(m.float(), dim=1, eps=1e-10)
        b = F.normalize(t.detach().float(), dim=1, eps=1e-10)
        total = total + (a - b).square().sum(dim=1).mean()
    return total


def w_regularisation(w_plus: torch.Tensor, w_avg: torch.Tensor) -> torch.Tensor:
    """L_w = mean (w⁺ − w̄)²; w⁺ (B, num_ws, w_dim), w̄ (w_dim,)."""
    return (w_plus - w_avg).square().mean()


class LPIPS(nn.Module):
    """LPIPS-VGG distance on images in [−1, 1] (B, 3, H, W) → mean over the batch, through the
    ``lpips`` package. Its linear heads ship with the package; the VGG-16 backbone comes from
    torchvision's cache or download, or from ``vgg_weights``: a local torchvision VGG-16 state dict.
    ``random_backbone`` keeps a random VGG (for timing only: the distance is then meaningless).
    """

    def __init__(
        self, vgg_weights: str | Path | None = None, random_backbone: bool = False
    ) -> None:
        super().__init__()
        try:
            import lpips
        except ImportError:
            raise UserError(
                "LPIPS needs the 'lpips' package: pip install 'viscoin[metrics]', "
                "or train without it with --set viscoin.lpips=none."
            ) from None
        import contextlib
        import io

        # read (and check) a local file before building the network: a bad path fails at once
        vgg_state = None if vgg_weights is None or random_backbone else _read_vgg(Path(vgg_weights))
        with contextlib.redirect_stdout(io.StringIO()):  # lpips prints on construction
            if random_backbone:
                self.model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
            elif vgg_weights is None:
                try:
                    self.model = lpips.LPIPS(net="vgg", verbose=False)
                except Exception as exc:
                    raise UserError(
                        f"cannot load LPIPS's VGG-16 ImageNet backbone ({type(exc).__name__}). Offline, "
                        "put torchvision's vgg16 state dict on disk and pass --set viscoin.lpips=PATH, "
                        "or use --set viscoin.lpips=none."
                    ) from None
            else:
                self.model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
                _load_vgg_features(self.model.net, vgg_state, Path(vgg_weights))
        self.model.eval().requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.model(a.float(), b.float(), normalize=False).mean()

    def train(self, mode: bool = True) -> LPIPS:  # always frozen, always eval
        return super().train(False)


def _read_vgg(path: Path) -> dict[str, torch.Tensor]:
    return load_state_dict_file(
        path,
        "LPIPS VGG-16 weights",
        "Give torchvision's vgg16 state dict (.pth/.safetensors) as viscoin.lpips=PATH "
        "(evaluate: --lpips PATH), or use none.",
    )


def _load_vgg_features(net: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy torchvision VGG-16 ``features.N.*`` weights into lpips' sliced copy (same indices)."""
    by_index = {}
    for name, module in net.named_modules():
        parts = name.split(".")
        if len(parts) == 2 and parts[0].startswith("slice") and isinstance(module, nn.Conv2d):
            by_index[parts[1]] = module
    loaded = 0
    for index, module in by_index.items():
        w, b = state.get(f"features.{index}.weight"), state.get(f"features.{index}.bias")
        if w is None or b is None or w.shape != module.weight.shape:
            raise UserError(
                f"{path} is not a torchvision VGG-16 state dict (features.{index} missing or mis-shaped)"
            )
        module.weight.data.copy_(w)
        module.bias.data.copy_(b)
        loaded += 1
    if loaded != 13:
        raise UserError(f"{path}: expected 13 VGG-16 conv layers, found {loaded}")


def build_lpips(spec: str) -> LPIPS | None:
    """``vgg`` → torchvision's weights; ``none`` → no LPIPS term; a path → local VGG-16 weights."""
    if spec in ("none", "", None):
        return None
    if spec == "vgg":
        return LPIPS()
    return LPIPS(vgg_weights=spec)
