"""``train gan --init-from``: networks start from an official-format pickle or a viscoin run."""

import pickle

import pytest
import torch
import yaml

from tests.models import official_pickle
from tests.models.test_stylegan2 import randomise
from tests.train.test_gan import TINY
from viscoin.cli import main
from viscoin.config import load_config
from viscoin.errors import UserError
from viscoin.models.stylegan2 import Discriminator, Generator, load_generator, save_generator
from viscoin.train.gan import _new_state
from viscoin.train.gan_init import apply_init_architecture, load_init_source
from viscoin.utils.checkpoint import load_state

# An architecture the TINY config does not describe (z_dim, w_dim, channels), so the override shows.
SYNTHESIS = {"channel_base": 256, "channel_max": 8, "num_fp16_res": 0, "conv_clamp": None}


def tiny_networks():
    def generator():
        G = Generator(
            12, 0, 10, 16, 3, mapping_kwargs={"num_layers": 3}, synthesis_kwargs=SYNTHESIS
        )
        randomise(G)
        return G.eval()

    D = Discriminator(0, 16, 3, channel_base=256, channel_max=8, architecture="orig")
    randomise(D)
    return generator(), generator(), D.eval()  # G, G_ema (different weights), D


def write_pickle(path, monkeypatch, G, G_ema, D, keys=("G", "D", "G_ema")):
    official_pickle.install_fake_modules(monkeypatch)
    nets = {"G": G, "D": D, "G_ema": G_ema}
    data = {
        key: official_pickle.persistent(
            nets[key],
            "class Network: pass\n",
            official_pickle.official_kwargs(nets[key].to_config()),
        )
        for key in keys
    }
    with open(path, "wb") as fh:
        pickle.dump({**data, "augment_pipe": None}, fh, protocol=3)
    return path


def same(a, b, skip=()):
    sa, sb = a.state_dict() if hasattr(a, "state_dict") else a, b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if key not in skip:
            assert torch.equal(sa[key], sb[key]), key


def run_main(*args):
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def test_init_from_pickle_starts_from_its_networks(tmp_path, monkeypatch):
    G, G_ema, D = tiny_networks()
    pkl = write_pickle(tmp_path / "network-snapshot-000100.pkl", monkeypatch, G, G_ema, D)
    cfg = load_config(None, TINY)
    changed = apply_init_architecture(cfg.gan, load_init_source(pkl))
    assert changed["z_dim"] == (16, 12) and changed["mapping_layers"] == (2, 3)
    assert changed["d_architecture"] == ("resnet", "orig")
    assert (cfg.gan.channel_base, cfg.gan.channel_max, cfg.gan.init_from) == (256, 8, str(pkl))
    state = _new_state(cfg.gan, 3, torch.device("cpu"), load_init_source(pkl))
    same(state.G, G)  # mapping.w_avg included
    same(state.G_ema, G_ema)
    same(state.D, D)
    assert state.step == 0 and not state.opt_G.state and not state.opt_D.state
    assert state.G.training and not state.G_ema.training


def test_init_from_through_the_cli(tmp_path, monkeypatch):
    G, G_ema, D = tiny_networks()
    pkl = write_pickle(tmp_path / "snapshot.pkl", monkeypatch, G, G_ema, D)
    data = ["data.resolution=16", "data.options.n_train=8", "gan.kimg=0.004", "gan.lr=0"]
    args = ["train", "gan", "--config", "shapes", *(f"--set={s}" for s in TINY + data)]
    args += ["--device", "cpu", "--quiet", "--runs-dir", str(tmp_path)]
    assert run_main(*args, "--name", "a", "--init-from", str(pkl)) == 0
    written = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["gan"]
    assert (written["z_dim"], written["w_dim"], written["init_from"]) == (12, 10, str(pkl))
    # One step at lr 0: D and G still hold the pickle's weights (only w_avg has moved).
    saved = load_state(tmp_path / "a" / "checkpoints" / "gan-training.state.pt")
    assert saved["step"] == 1 and not torch.equal(saved["G"]["mapping.w_avg"], G.mapping.w_avg)
    same(saved["D"], D)
    same(saved["G"], G, skip={"mapping.w_avg"})
    assert load_generator(tmp_path / "a" / "checkpoints" / "generator.safetensors").z_dim == 12

    # A run directory as the source: G from its resume state, G_ema and D from its files.
    source = load_init_source(tmp_path / "a")
    same(source.G, G, skip={"mapping.w_avg"})
    same(source.D, D)
    assert run_main(*args, "--name", "b", "--init-from", str(tmp_path / "a")) == 0

    capsys_err = tmp_path / "err"
    with open(capsys_err, "w") as fh, monkeypatch.context() as m:
        m.setattr("sys.stderr", fh)
        code = run_main(*args, "--set=data.resolution=32", "--name", "c", "--init-from", str(pkl))
    assert code == 2
    message = capsys_err.read_text()
    assert "16-px network, but data.resolution is 32" in message
    assert "set data.resolution=16" in message


def test_init_from_refuses_other_pickles(tmp_path, monkeypatch):
    G, G_ema, D = tiny_networks()
    no_d = write_pickle(tmp_path / "no-d.pkl", monkeypatch, G, G_ema, D, keys=("G", "G_ema"))
    with pytest.raises(UserError, match="no 'D' entry"):
        load_init_source(no_d)
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    with pytest.raises(UserError, match="not a StyleGAN2-ADA network pickle"):
        load_init_source(other)
    with pytest.raises(UserError, match="without checkpoints/generator.safetensors"):
        load_init_source(tmp_path)


def test_init_from_a_generator_file_with_non_finite_weights_is_refused(tmp_path):
    G, _, _ = tiny_networks()
    with torch.no_grad():
        G.synthesis.b4.const.fill_(float("nan"))
    save_generator(G, tmp_path / "G.safetensors")
    with pytest.raises(UserError, match=r"non-finite values in synthesis\.b4\.const"):
        load_init_source(tmp_path / "G.safetensors")
