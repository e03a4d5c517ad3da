"""Safe import of official StyleGAN2-ADA network pickles (``network-snapshot-*.pkl``).

Those files are plain pickles of a dict ``{'G', 'D', 'G_ema', 'augment_pipe', ...}``. Each network
is stored through NVIDIA's ``torch_utils.persistence``: a call to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose ``meta`` holds the *source
code* of the defining module (``module_src``), the class name and the object's ``__dict__``
(``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, ...). Loading such a file normally
executes that source. Here a restricted unpickler resolves only an explicit allow-list of names;
the persistence hook is replaced by :class:`PersistentRecord`, which keeps ``meta`` as data and
never runs ``module_src``. Weights and constructor arguments are read from the records and loaded
into our own :class:`Generator` / :class:`Discriminator`.
"""

from __future__ import annotations

import _codecs
import collections
import io
import pickle
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from viscoin.errors import UserError, UserNotice
from viscoin.models.stylegan2.discriminator import Discriminator, save_discriminator
from viscoin.models.stylegan2.generator import Generator, save_generator

NOTHING_RUN = "Nothing from the file was executed."


@dataclass
class PersistentRecord:
    """What ``_reconstruct_persistent_obj(meta)`` stands for, kept as data (never instantiated)."""

    class_name: str
    state: dict[str, Any]
    version: int | None = None
    module_src: str = field(default="", repr=False)  # source text; never executed


class EasyDictRecord(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access) while unpickling.

    Built empty by ``NEWOBJ`` then filled by ``SETITEMS`` (keys checked there), or from its
    items, whose keys are checked here."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__(_flat_mapping(dict)(items))


def _persistent_record(meta: Any) -> PersistentRecord:
    if not isinstance(meta, Mapping) or meta.get("type") != "class":
        raise pickle.UnpicklingError("persistent object without a 'class' meta record")
    state = meta.get("state")
    class_name, module_src = meta.get("class_name"), meta.get("module_src", "")
    if not isinstance(class_name, str) or not isinstance(module_src, str):
        raise pickle.UnpicklingError("persistent object whose class name or source is not text")
    return PersistentRecord(
        class_name=class_name,
        state=dict(state) if isinstance(state, Mapping) else {},
        version=meta.get("version") if isinstance(meta.get("version"), int) else None,
        module_src=module_src,
    )


# -- bounds: a small pickle can describe a huge object graph ---------------------------------------
# Shared references (the memo) let a few hundred bytes describe a list nested 40 levels deep with
# 2^40 paths through it, or a list that contains itself. Anything that walks such a graph (str(),
# hashing a nested tuple, converting arguments) would run out of memory, time or stack. Keys are
# kept flat while unpickling; the result is walked once, bounded, before anything else reads it.
MAX_DEPTH = 100  # nesting levels (a real network pickle has about 20)
MAX_VISITS = 1_000_000  # objects reached, shared references counted every time they are reached
_ATOMS = (str, bytes, int, float, bool, type(None))


class PickleTooComplex(pickle.UnpicklingError):
    """The pickle's object graph is beyond :data:`MAX_DEPTH` / :data:`MAX_VISITS`."""


def _flat_key(key: Any) -> Any:
    """A dict key or set element must hash in bounded time: an atom or a short tuple of atoms."""
    if isinstance(key, _ATOMS) or (
        isinstance(key, tuple) and len(key) <= 8 and all(isinstance(k, _ATOMS) for k in key)
    ):
        return key
    raise PickleTooComplex("a dict key or set element that is not a plain value")


def _flat_set(items: Any = ()) -> set:
    return {_flat_key(k) for k in _bounded_items(items)}


def _flat_frozenset(items: Any = ()) -> frozenset:
    return frozenset(_flat_set(items))


def _bounded_items(items: Any) -> list:
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise pickle.UnpicklingError("a set built from something other than a list")
    return list(items)


def _flat_mapping(cls: type) -> Callable[..., Any]:
    def build(items: Any = ()) -> Any:
        pairs = list(items.items()) if isinstance(items, Mapping) else _bounded_items(items)
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            raise pickle.UnpicklingError(f"{cls.__name__} built from something other than pairs")
        return cls((_flat_key(k), v) for k, v in pairs)

    return build


def _numpy_dtype(spec: Any, *flags: Any) -> Any:
    if not isinstance(spec, str):
        raise pickle.UnpicklingError("a numpy dtype that is not a plain type name")
    return np.dtype(spec, *[bool(f) for f in flags[:2]])


def check_graph(root: Any) -> None:
    """Walk ``root`` (iteratively) and raise :class:`PickleTooComplex` past the bounds."""
    stack, visits = [(root, 0)], 0
    while stack:
        value, depth = stack.pop()
        visits += 1
        if visits > MAX_VISITS:
            raise PickleTooComplex(f"it describes more than {MAX_VISITS:,} objects")
        if depth > MAX_DEPTH:
            raise PickleTooComplex(f"it nests deeper than {MAX_DEPTH} levels (or contains itself)")
        if isinstance(value, Mapping):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = list(value)
        elif isinstance(value, PersistentRecord):
            children = [value.state]
        else:  # tensors, arrays, text, numbers, dtypes: leaves
            continue
        stack.extend((child, depth + 1) for child in children)


def _load_storage_from_bytes(data: bytes) -> Any:
    # torch pickles a storage as torch.save() bytes; read them with torch's own restricted loader.
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage is not a bytes object")
    return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, *rest: Any) -> Any:
    if isinstance(storage, torch.TypedStorage):
        available = storage.size()
    elif isinstance(storage, torch.UntypedStorage):
        available = storage.nbytes()
    else:
        raise pickle.UnpicklingError("tensor data is not a torch storage")
    size, stride = tuple(size), tuple(stride)
    numbers = (storage_offset, *size, *stride)
    if len(size) != len(stride) or not all(isinstance(n, int) and n >= 0 for n in numbers):
        raise pickle.UnpicklingError("malformed tensor shape")
    # torch does not bounds-check a view into a storage: a forged shape would read foreign memory.
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if 0 not in size and last >= available:
        raise pickle.UnpicklingError("tensor shape exceeds its data")
    # Backward hooks and extra metadata (rest) are dropped: a weight needs neither.
    return torch._utils._rebuild_tensor(storage, storage_offset, size, stride).clone()


def _rebuild_parameter(data: Any, requires_grad: bool, backward_hooks: Any, *state: Any) -> Any:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter data is not a tensor")
    return data.detach()


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles spell a bytes object as _codecs.encode(text, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return _codecs.encode(text, "latin1")


def _numpy_attr(*names: str) -> Any:
    for name in names:
        module_name, _, attr = name.rpartition(".")
        try:
            module = __import__(module_name, fromlist=[attr])
            return getattr(module, attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(names[0])


def _numpy_reconstruct(cls: Any, shape: Any, dtype: Any) -> Any:
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("numpy reconstruction of a class other than ndarray")
    return _numpy_attr("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct")(
        cls, shape, dtype
    )


_NUMPY_SCALAR = _numpy_attr("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar")
_NUMPY_FROMBUFFER = _numpy_attr("numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer")

# (module, name) as written in the pickle stream → what it resolves to. Anything else is refused.
ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("collections", "OrderedDict"): _flat_mapping(collections.OrderedDict),
    ("builtins", "set"): _flat_set,
    ("builtins", "frozenset"): _flat_frozenset,
    ("__builtin__", "set"): _flat_set,
    ("__builtin__", "frozenset"): _flat_frozenset,
    ("_codecs", "encode"): _latin1_encode,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _NUMPY_SCALAR,
    ("numpy._core.multiarray", "scalar"): _NUMPY_SCALAR,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _NUMPY_FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _NUMPY_FROMBUFFER,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("dnnlib.util", "EasyDict"): EasyDictRecord,
    ("dnnlib", "EasyDict"): EasyDictRecord,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names something outside the allow-list."""


def _build_keys(self: Any) -> list:
    # BUILD's state: a dict, or (dict, slot dict); their keys become attribute names
    state = self.stack[-1]
    parts = state if isinstance(state, tuple) else (state,)
    return [k for part in parts if isinstance(part, dict) for k in part]


def _checked_keys(load: Callable[[Any], None], keys: Callable[[Any], list]) -> Callable:
    """Wrap one opcode of Python's unpickler: the keys it is about to hash are checked first."""

    def run(self: Any) -> None:
        for key in keys(self):
            _flat_key(key)
        load(self)

    return run


class SafeUnpickler(pickle._Unpickler):
    """An unpickler that resolves only the names in :data:`ALLOWED` and hashes only flat keys.

    Python's own (pure-Python) unpickler, so that the opcodes that hash a key (``SETITEM(S)``,
    ``DICT``, ``ADDITEMS``, ``FROZENSET``, ``BUILD``) can check it first; the C one cannot be
    hooked there.
    """

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.SETITEM[0]] = _checked_keys(
        pickle._Unpickler.load_setitem, lambda self: [self.stack[-2]]
    )
    dispatch[pickle.SETITEMS[0]] = _checked_keys(
        pickle._Unpickler.load_setitems, lambda self: self.stack[0::2]
    )
    dispatch[pickle.DICT[0]] = _checked_keys(
        pickle._Unpickler.load_dict, lambda self: self.stack[0::2]
    )
    dispatch[pickle.ADDITEMS[0]] = _checked_keys(
        pickle._Unpickler.load_additems, lambda self: list(self.stack)
    )
    dispatch[pickle.FROZENSET[0]] = _checked_keys(
        pickle._Unpickler.load_frozenset, lambda self: list(self.stack)
    )
    dispatch[pickle.BUILD[0]] = _checked_keys(pickle._Unpickler.load_build, _build_keys)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not used by network pickles")


def read_network_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`; networks come back as :class:`PersistentRecord`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"network pickle not found: {path}. Give the path of a .pkl file.")
    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation notices
            data = SafeUnpickler(fh).load()
        check_graph(data)
        return data
    except PickleTooComplex as exc:
        raise UserError(
            f"refused to load {path}: {exc}, which a StyleGAN2-ADA network pickle never does "
            f"(a crafted file). {NOTHING_RUN}"
        ) from None
    except RecursionError:
        raise UserError(
            f"refused to load {path}: it nests too deep to read (a crafted file). {NOTHING_RUN}"
        ) from None
    except RefusedGlobal as exc:
        raise UserError(
            f"refused to load {path}: it asks for '{exc}', which a StyleGAN2-ADA network pickle "
            f"does not need. {NOTHING_RUN}"
        ) from None
    except UserError:
        raise
    except Exception as exc:  # truncated file, wrong format, corrupt tensor data ...
        raise UserError(
            f"cannot read {path} as a StyleGAN2-ADA network pickle ({type(exc).__name__}: {exc}). "
            f"{NOTHING_RUN}"
        ) from None


def _plain(value: Any) -> Any:
    """EasyDict records → dicts, tuples → lists, numpy scalars → numbers (constructor arguments)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def record_tensors(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """All parameters and persistent buffers of a pickled module tree, named like ``state_dict()``."""
    state = record.state
    tensors: dict[str, torch.Tensor] = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise UserError(f"'{prefix}{name}' in the pickle is not a tensor.")
            tensors[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise UserError(f"sub-module '{prefix}{name}' in the pickle is not a network record.")
        tensors.update(record_tensors(child, f"{prefix}{name}."))
    return tensors


def record_init_kwargs(record: PersistentRecord, positional: tuple[str, ...]) -> dict[str, Any]:
    """The constructor arguments the persistence layer saved (``_init_args`` / ``_init_kwargs``)."""
    args = list(record.state.get("_init_args") or ())
    kwargs = _plain(record.state.get("_init_kwargs") or {})
    if len(args) > len(positional):
        raise UserError(f"{record.class_name} was built with unexpected positional arguments.")
    kwargs.update(zip(positional, _plain(args), strict=False))
    return kwargs


GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
DISCRIMINATOR_ARGS = ("c_dim", "img_resolution", "img_channels")


def _network(data: Any, key: str, class_name: str, path: Path) -> PersistentRecord:
    if not isinstance(data, Mapping) or key not in data:
        found = ", ".join(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
        raise UserError(
            f"{path} is not a StyleGAN2-ADA network pickle: no '{key}' entry (found: {found})."
        )
    record = data[key]
    if not isinstance(record, PersistentRecord) or record.class_name != class_name:
        name = record.class_name if isinstance(record, PersistentRecord) else type(record).__name__
        raise UserError(f"{path}: '{key}' is a {name}, not a StyleGAN2 {class_name}.")
    return record


def _build(cls: type, record: PersistentRecord, kwargs: dict[str, Any], key: str, path: Path):
    try:
        module = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"{path}: '{key}' has constructor arguments this StyleGAN2 does not support ({exc})."
        ) from None
    tensors = record_tensors(record)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{label}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
            if names
        )
        raise UserError(
            f"{path}: '{key}' does not match the StyleGAN2 architecture its arguments describe "
            f"({details}). Is it a StyleGAN2(-ADA) network?"
        )
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    module = module.eval().requires_grad_(False)
    check_finite(module, key, path)
    return module


def check_finite(module: torch.nn.Module, key: str, path: Path) -> None:
    """Refuse non-finite weights; a non-finite ``mapping.w_avg`` (a running mean, which official
    snapshots can carry as NaN when the first batch the mapping saw held NaN) is estimated again
    as the mean w of :data:`W_AVG_SAMPLES` latents, with a warning."""
    bad = [k for k, v in module.state_dict().items() if not torch.isfinite(v).all()]
    if bad == ["mapping.w_avg"] and isinstance(module, Generator):
        mapping = module.mapping
        gen = torch.Generator().manual_seed(0)
        z = torch.randn([W_AVG_SAMPLES, mapping.z_dim], generator=gen)
        c = torch.zeros([W_AVG_SAMPLES, mapping.c_dim])
        if mapping.c_dim:  # labels drawn uniformly, one-hot
            c[
                torch.arange(W_AVG_SAMPLES),
                torch.randint(mapping.c_dim, [W_AVG_SAMPLES], generator=gen),
            ] = 1
        with torch.no_grad():
            ws = torch.cat(
                [mapping(zb, cb)[:, 0] for zb, cb in zip(z.split(1000), c.split(1000), strict=True)]
            )
        mapping.w_avg.copy_(ws.mean(0))
        warnings.warn(
            f"{path}: '{key}' has a non-finite mapping.w_avg (its running mean w); it was "
            f"estimated again as the mean w of {W_AVG_SAMPLES} random latents.",
            UserNotice,
            stacklevel=3,
        )
        return
    if bad:
        raise UserError(
            f"{path}: '{key}' has non-finite values in {', '.join(bad[:4])}"
            f"{' ...' if len(bad) > 4 else ''}: the snapshot is broken (a diverged run?); use an "
            "earlier snapshot."
        )


W_AVG_SAMPLES = 10_000


def generator_from_pickle(data: Any, path: str | Path, key: str = "G_ema") -> Generator:
    """Our :class:`Generator` with the weights of ``data[key]`` (an unpickled network dict)."""
    record = _network(data, key, "Generator", Path(path))
    kwargs = record_init_kwargs(record, GENERATOR_ARGS)
    return _build(Generator, record, kwargs, key, Path(path))


def discriminator_from_pickle(data: Any, path: str | Path, key: str = "D") -> Discriminator:
    """Our :class:`Discriminator` with the weights of ``data[key]``."""
    record = _network(data, key, "Discriminator", Path(path))
    kwargs = record_init_kwargs(record, DISCRIMINATOR_ARGS)
    return _build(Discriminator, record, kwargs, key, Path(path))


def convert_pickle(
    pkl: str | Path,
    generator_out: str | Path,
    discriminator_out: str | Path | None = None,
) -> tuple[Generator, Discriminator | None]:
    """Convert an official network pickle: ``G_ema`` → ``generator_out`` (and ``D`` → ``discriminator_out``)."""
    data = read_network_pickle(pkl)
    extra = {"source": Path(pkl).name}
    if isinstance(data, Mapping) and isinstance(data.get("training_set_kwargs"), Mapping):
        kwargs = _plain(data["training_set_kwargs"])
        extra["training_set_kwargs"] = {
            k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, bool, type(None)))
        }
    G = generator_from_pickle(data, pkl)
    save_generator(G, generator_out, extra=extra)
    D = None
    if discriminator_out is not None:
        D = discriminator_from_pickle(data, pkl)
        save_discriminator(D, discriminator_out, extra=extra)
    return G, D
