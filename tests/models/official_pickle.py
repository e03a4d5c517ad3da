"""Writes network pickles in the on-disk layout of the official StyleGAN2-ADA snapshots.

The official ``torch_utils.persistence`` pickles each network as a call
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = {type: 'class', version: 6, module_src: <source text>, class_name, state: obj.__dict__}``
(``state`` holds ``_parameters``, ``_buffers``, ``_modules``, ``_init_args``, ``_init_kwargs`` ...);
constructor kwargs are ``dnnlib.util.EasyDict``s and equalised-lr gains numpy float64s. Here
stand-in modules named ``torch_utils.persistence`` and ``dnnlib.util`` make ``pickle`` write
exactly those global names, from networks built with our own classes.
"""

from __future__ import annotations

import copy
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn


def _reconstruct_persistent_obj(meta):  # the name the stream refers to; never called here
    raise AssertionError("only used as a pickle reference")


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict."""


def install_fake_modules(monkeypatch) -> None:
    """Register ``torch_utils.persistence`` and ``dnnlib.util`` so pickle can name them."""
    persistence = types.ModuleType("torch_utils.persistence")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils = types.ModuleType("torch_utils")
    torch_utils.persistence = persistence
    util = types.ModuleType("dnnlib.util")
    EasyDict.__module__ = "dnnlib.util"
    util.EasyDict = EasyDict
    dnnlib = types.ModuleType("dnnlib")
    dnnlib.util = util
    for name, module in [
        ("torch_utils", torch_utils),
        ("torch_utils.persistence", persistence),
        ("dnnlib", dnnlib),
        ("dnnlib.util", util),
    ]:
        monkeypatch.setitem(sys.modules, name, module)


class Persistent:
    """Pickles as an instance of an official ``@persistent_class`` network does."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


def persistent(module: nn.Module, module_src: str, init_kwargs: dict | None = None) -> Persistent:
    """A module tree as the official persistence layer would pickle it (after eval().cpu())."""
    state = dict(module.__dict__)
    state["training"] = False
    state["_parameters"] = OrderedDict(module._parameters)
    state["_buffers"] = OrderedDict(module._buffers)
    state["_modules"] = OrderedDict(
        (name, persistent(child, module_src)) for name, child in module._modules.items()
    )
    for key, value in list(state.items()):
        if key.endswith("gain") and isinstance(value, float):
            state[key] = np.float64(value)  # official gains come from np.sqrt
    state["_init_args"] = ()
    state["_init_kwargs"] = init_kwargs or {}
    meta = {
        "type": "class",
        "version": 6,
        "module_src": module_src,
        "class_name": type(module).__name__,
        "state": state,
    }
    return Persistent(meta)


def official_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """Our JSON config → the kwargs an official training run passes (EasyDicts for sub-dicts)."""
    return {k: EasyDict(v) if isinstance(v, dict) else v for k, v in config.items()}


def write_network_pickle(
    path: Path, G: nn.Module, D: nn.Module, module_src: str, protocol: int = 3
) -> Path:
    """``{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}`` as written by the training loop."""
    G = copy.deepcopy(G).eval().requires_grad_(False).cpu()
    D = copy.deepcopy(D).eval().requires_grad_(False).cpu()
    data = {
        "training_set_kwargs": {
            "class_name": "training.dataset.ImageFolderDataset",
            "path": "/data/tiny.zip",
            "use_labels": G.c_dim > 0,
            "max_size": 100,
            "xflip": False,
            "resolution": G.img_resolution,
        },
        "G": persistent(G, module_src, official_kwargs(G.to_config())),
        "D": persistent(D, module_src, official_kwargs(D.to_config())),
        "G_ema": persistent(G, module_src, official_kwargs(G.to_config())),
        "augment_pipe": None,
    }
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    return path
