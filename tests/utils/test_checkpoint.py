import random

import numpy as np
import pytest
import torch

from tests.hostile import hostile_weights, truncated_weights
from viscoin.errors import UserError
from viscoin.utils import io as vio
from viscoin.utils.checkpoint import (
    checkpoint_kind,
    load_checkpoint,
    load_state,
    load_state_dict_file,
    rng_state,
    save_checkpoint,
    save_state,
    set_rng_state,
)


def test_round_trip_keeps_tensors_kind_and_config(tmp_path):
    tensors = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    path = save_checkpoint(
        tmp_path / "m.safetensors", tensors, "toy", {"width": 4}, extra={"step": 7}
    )
    loaded, config, extra = load_checkpoint(path, kind="toy")
    assert torch.equal(loaded["a.weight"], tensors["a.weight"]) and torch.equal(
        loaded["b"], tensors["b"]
    )
    assert config == {"width": 4} and extra == {"step": 7}
    assert checkpoint_kind(path) == "toy"


def test_other_model_is_refused_with_clear_message(tmp_path):
    path = save_checkpoint(
        tmp_path / "g.safetensors", {"x": torch.zeros(1)}, "stylegan2.generator", {}
    )
    with pytest.raises(
        UserError, match="holds a 'stylegan2.generator' model, but a 'classifier' model"
    ):
        load_checkpoint(path, kind="classifier")


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(UserError, match="not a viscoin checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")


def test_interrupted_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {"w": torch.ones(2, 2)}, "toy", {"v": 1})

    from viscoin.utils import io

    real_write = io.write_bytes

    def dying_save(filename, data):
        # write half a file, then die as a killed process would
        real_write(filename, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "write_bytes", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": torch.zeros(2, 2)}, "toy", {"v": 2})
    tensors, config, _ = load_checkpoint(path, kind="toy")
    assert torch.equal(tensors["w"], torch.ones(2, 2)) and config == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_atomic_text_write(tmp_path):
    target = tmp_path / "f.txt"
    vio.atomic_write_text(target, "one")
    with pytest.raises(RuntimeError), vio.atomic_path(target) as tmp:
        tmp.write_text("two (half)")
        raise RuntimeError("crash")
    assert target.read_text() == "one"


def test_state_and_rng_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_state(tmp_path / "s.pt", {"optimizer": opt.state_dict(), "rng": rng_state(), "step": 5})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = load_state(tmp_path / "s.pt")
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    assert state["step"] == 5
    with pytest.raises(UserError, match="resume state not found"):
        load_state(tmp_path / "missing.pt")


def test_the_hostile_payload_runs_when_unpickled_unsafely(tmp_path):
    # the premise of the tests below: without weights_only this file runs code
    marker = tmp_path / "ran"
    torch.load(hostile_weights(tmp_path / "evil.pth", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_weights_file_reads_a_state_dict(tmp_path, suffix):
    state = {"a": torch.randn(2, 3)}
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": state}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    loaded = load_state_dict_file(path, "test weights", "Give another file.")
    assert loaded.keys() == {"a"} and torch.equal(loaded["a"], state["a"])


def test_load_weights_file_refuses_every_bad_file_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a weights file at all")
    not_tensors = tmp_path / "list.pt"
    torch.save([1, 2], not_tensors)
    cases = {
        hostile_weights(tmp_path / "evil.pth", marker): "pickled Python objects",
        truncated_weights(tmp_path / "cut.pth"): "not a complete",
        garbage: "not a complete",
        tmp_path / "missing.pth": "not found",
        not_tensors: "does not hold a state dict",
    }
    for path, reason in cases.items():
        with pytest.raises(UserError, match=reason) as info:
            load_state_dict_file(path, "test weights", "Give another file.")
        message = str(info.value)
        assert str(path) in message and "Give another file." in message and "\n" not in message
    assert not marker.exists()
    with pytest.raises(UserError, match="cannot read resume state"):
        load_state(hostile_weights(tmp_path / "evil.state.pt", marker))
    assert not marker.exists()
