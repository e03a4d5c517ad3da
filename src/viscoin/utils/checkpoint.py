"""Checkpoints in our own format: safetensors weights with the model's kind and config as metadata.

A model file alone rebuilds its model: the metadata holds ``viscoin.kind`` (what model it is, e.g.
``stylegan2.generator``), ``viscoin.config`` (JSON constructor arguments) and ``viscoin.version``.
Resume state (optimisers, RNG, step counters) lives in a separate ``.state.pt`` file written with
``torch.save`` and read back with ``weights_only=True`` (no arbitrary code on load). All writes are
atomic. :func:`load_weights_file` is the one reader of any weights file a user hands us (Inception,
LPIPS's VGG-16, classifier backbones, resume state): it never unpickles anything but tensors and
plain containers, and turns every failure into a :class:`UserError` naming the file.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from viscoin.errors import UserError
from viscoin.utils.io import atomic_write_bytes

FORMAT_VERSION = "1"


def save_checkpoint(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    kind: str,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write ``tensors`` to a safetensors file tagged with ``kind`` and ``config``.

    ``extra`` is any further JSON-serialisable information (stored under ``viscoin.extra``).
    Tensors are made contiguous and moved to CPU; shared storage is cloned.
    """
    path = Path(path)
    flat = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    metadata = {
        "viscoin.kind": kind,
        "viscoin.version": FORMAT_VERSION,
        "viscoin.config": json.dumps(dict(config), sort_keys=True),
        "viscoin.extra": json.dumps(dict(extra or {}), sort_keys=True),
    }
    # serialised in memory, then written by Python: a full disk is an OSError (one clear message)
    atomic_write_bytes(path, safetensors_bytes(flat, metadata=metadata))
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The raw safetensors metadata of ``path``; a clear error if it is not a viscoin file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint not found: {path}. Check the path (or train/convert a model first)."
        )
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(
            f"{path} is not a readable safetensors file ({exc}). Give a checkpoint written by viscoin."
        ) from None
    if "viscoin.kind" not in metadata:
        raise UserError(
            f"{path} is a safetensors file but not a viscoin checkpoint (no 'viscoin.kind' metadata). "
            "Official StyleGAN2 pickles are converted with 'viscoin gan convert'."
        )
    return metadata


def checkpoint_kind(path: str | Path) -> str:
    """The model kind stored in a checkpoint, e.g. ``"classifier"``."""
    return read_metadata(path)["viscoin.kind"]


def checkpoint_step(path: str | Path, key: str = "step") -> int | None:
    """The step stamp (``viscoin.extra[key]``) of a model file; None when the file is missing,
    unreadable or unstamped. Resume compares it with the state file's step."""
    try:
        extra = json.loads(read_metadata(path).get("viscoin.extra", "{}"))
    except (UserError, ValueError):
        return None
    value = extra.get(key) if isinstance(extra, dict) else None
    return value if type(value) is int else None


def load_checkpoint(
    path: str | Path, kind: str | tuple[str, ...] | None = None, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read a checkpoint → ``(tensors, config, extra)``.

    If ``kind`` is given and the file holds another kind of model, a :class:`UserError` names both.
    """
    metadata = read_metadata(path)
    _check_version(metadata, Path(path))
    found = metadata["viscoin.kind"]
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted is not None and found not in wanted:
        raise UserError(
            f"{path} holds a '{found}' model, but a '{' or '.join(wanted)}' model is needed here. "
            "Check which file you passed."
        )
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:  # e.g. truncated after the header
        raise UserError(
            f"{path} is a damaged safetensors file ({exc}). Give a complete checkpoint."
        ) from None
    config = _json_object(metadata, "viscoin.config", path)
    extra = _json_object(metadata, "viscoin.extra", path)
    return tensors, config, extra


def _check_version(metadata: Mapping[str, str], path: Path) -> None:
    version = metadata.get("viscoin.version", FORMAT_VERSION)
    if not (isinstance(version, str) and version.isdigit()):
        raise UserError(f"{path}: format version {version!r} is not a number; the file is damaged.")
    if int(version) > int(FORMAT_VERSION):
        raise UserError(
            f"{path} is in model format {version}, written by a newer viscoin; this one reads "
            f"format {FORMAT_VERSION} and older. Upgrade viscoin (pip install -U viscoin)."
        )


def _json_object(metadata: Mapping[str, str], key: str, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(metadata.get(key, "{}"))
    except (json.JSONDecodeError, TypeError):
        value = None
    if not isinstance(value, dict):
        raise UserError(
            f"{path}: its '{key}' metadata is not a JSON object; the file was edited or damaged. "
            "Give a file written by viscoin."
        )
    return value


# Every number in a model's config is bounded before the model is built: a hand-edited 10^12
# would otherwise make a constructor loop or allocate without end. Real configs stay far below.
CONFIG_NUMBER_LIMIT = 2**16


def _check_numbers(value: Any, where: str, path: Path) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_numbers(v, f"{where}.{k}" if where else str(k), path)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_numbers(v, f"{where}[{i}]", path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, where, path)


def _check_number(value: float, where: str, path: Path) -> None:
    if not (math.isfinite(value) and abs(value) <= CONFIG_NUMBER_LIMIT):
        raise UserError(
            f"{path}: config value {where}={value!r} is out of range (at most "
            f"{CONFIG_NUMBER_LIMIT} in size); the file was edited or damaged."
        )


def build_checked(
    cls: type[torch.nn.Module],
    config: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    path: str | Path,
    factory: Any = None,
) -> torch.nn.Module:
    """``cls(**config)`` (or ``factory(config)``) with ``tensors`` loaded strictly, checked first.

    Before anything is allocated: every number in ``config`` is bounded, its keys are the
    constructor's (``cls`` without ``factory``), and the module is built on the ``meta`` device
    (no memory) so that its state dict's names and shapes can be compared with ``tensors``. A wrong
    shape (a transposed tensor, a class count that disagrees with the weights), a missing or extra
    tensor, or a config the constructor rejects is a :class:`UserError` naming the file.
    """
    import inspect

    path = Path(path)
    if not isinstance(config, Mapping):
        raise UserError(f"{path}: the model config is not a JSON object; the file is damaged.")
    _check_numbers(config, "", path)
    build = (lambda: factory(dict(config))) if factory is not None else (lambda: cls(**config))
    if factory is None:
        accepted = inspect.signature(cls).parameters
        unknown = sorted(set(config) - set(accepted))
        if unknown:
            raise UserError(
                f"{path}: config keys {', '.join(unknown)} are unknown to this viscoin's "
                f"{cls.__name__}; the file was edited or written by a newer viscoin."
            )
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except Exception as exc:  # the constructor's own checks: TypeError, ValueError, ZeroDivision...
        raise UserError(
            f"{path}: cannot rebuild {cls.__name__} from its config ({type(exc).__name__}: "
            f"{str(exc).strip()[:200]}); the file was edited or damaged."
        ) from None
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        parts = [
            f"{label} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected))
            if names
        ]
        parts += [f"{k} is {found[k]}, the config needs {expected[k]}" for k in wrong[:3]]
        raise UserError(
            f"{path}: its weights do not match the {cls.__name__} its config describes "
            f"({'; '.join(parts)}); the file was edited or damaged."
        )
    module = build()
    module.load_state_dict(dict(tensors), strict=True)
    return module


def load_weights_file(
    path: str | Path, what: str, fix: str, map_location: str | torch.device = "cpu"
) -> Any:
    """Read a user-supplied weights file without running any code it may carry.

    ``.safetensors`` files are read by safetensors; anything else by ``torch.load(weights_only=True)``,
    which refuses every pickled global but tensors and plain containers (a pickled module, or a
    payload whose ``__reduce__`` calls a function, fails before anything is called). ``what`` names
    the file's role in messages (e.g. ``"Inception weights"``), ``fix`` says what to pass instead.
    Returns what the file holds (a dict of tensors for a state dict).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}. {fix}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path), device=str(map_location))
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": the error below says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's weights-only unpickler: the file needs Python objects beyond tensors
        reason = (
            "it holds pickled Python objects beyond tensors (a whole model or code), which viscoin "
            "never unpickles"
        )
    except Exception as exc:  # truncated zip, garbage, bad safetensors header, ...
        reason = f"it is not a complete PyTorch or safetensors weights file ({type(exc).__name__})"
    raise UserError(f"cannot read {what} {path}: {reason}. {fix}")


def load_state_dict_file(path: str | Path, what: str, fix: str) -> dict[str, torch.Tensor]:
    """:func:`load_weights_file` for a state dict: ``{name: tensor}``, also when the file wraps it
    as ``{"state_dict": ...}`` (Lightning and many training scripts)."""
    state = load_weights_file(path, what, fix)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UserError(f"{what} file {path} does not hold a state dict (name → tensor). {fix}")
    return state


def save_state(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Atomically write resume state (optimiser state dicts, RNG states, counters)."""
    import io

    path = Path(path)
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read resume state written by :func:`save_state` (safe: ``weights_only=True``)."""
    state = load_weights_file(
        path,
        "resume state",
        "Resume needs a run that saved a checkpoint; start it anew without --resume.",
        map_location,
    )
    if not isinstance(state, dict):
        raise UserError(f"resume state {path} is not a dict; start the run anew without --resume.")
    return state


def rng_state() -> dict[str, Any]:
    """The RNG states of python, numpy and torch (CPU and CUDA) as tensors/ints, for resume."""
    import random

    import numpy as np

    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype("int64")),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    import random

    import numpy as np

    *internal, version = state["python"]
    random.setstate((version, tuple(internal), state["python_gauss"]))
    # the state may have been loaded with map_location=cuda: RNG states live on the host
    keys = state["numpy_keys"].cpu().numpy().astype("uint32")
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
