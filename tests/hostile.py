"""Weights files a user might be handed: a pickle that runs code when unpickled, a truncated one.

The payload only creates a marker file, so a test can tell whether anything unpickled it.
"""

from __future__ import annotations

import pathlib
from pathlib import Path

import torch


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: what any code-running pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def hostile_weights(path: Path, marker: Path) -> Path:
    """A ``torch.save`` file that looks like a state dict and creates ``marker`` when unpickled."""
    torch.save({"conv.weight": torch.zeros(1), "conv.bias": _Payload(marker)}, path)
    return path


def truncated_weights(path: Path) -> Path:
    """A real state dict cut in half, as an interrupted copy leaves it."""
    torch.save({"w": torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def shared_reference_bomb(path: Path, levels: int = 40) -> Path:
    """A pickle of a few hundred bytes: a list nested ``levels`` deep whose two items are the same
    list, so walking it reaches 2^levels lists. Placed where a converter reads arguments."""
    import pickle

    bomb: list = []
    for _ in range(levels):
        bomb = [bomb, bomb]
    path.write_bytes(pickle.dumps({"training_set_kwargs": {"path": bomb}}, protocol=2))
    return path


def self_referencing_list(path: Path) -> Path:
    """A pickle of a list that contains itself (walking it never ends)."""
    import pickle

    loop: list = []
    loop.append(loop)
    path.write_bytes(pickle.dumps({"training_set_kwargs": {"path": loop}}, protocol=2))
    return path


def hash_bomb(path: Path, levels: int = 40) -> Path:
    """A dict keyed by a tuple nested ``levels`` deep with shared halves: hashing the key alone
    takes 2^levels steps."""
    import pickle

    key: tuple = ()
    for _ in range(levels):
        key = (key, key)
    # a dict with the nested tuple as its key, built by hand (pickling {key: 1} would hash
    # it here): EMPTY_DICT, <key>, <1>, SETITEM
    key_ops = pickle.dumps(key, protocol=2)[2:-1]  # the tuple's opcodes, without PROTO and STOP
    path.write_bytes(b"\x80\x02}" + key_ops + b"K\x01s.")
    return path
