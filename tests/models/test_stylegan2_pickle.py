"""Official network pickles → our format, without running their code; then sampling from the
converted file must give the images the original weights give under generate.py."""

import builtins
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import run_cli
from tests.models import official_pickle
from tests.models import stylegan2_reference as ref
from tests.models.test_stylegan2 import randomise
from viscoin.cli import main
from viscoin.errors import UserError
from viscoin.models.stylegan2 import Discriminator, Generator, load_discriminator, load_generator
from viscoin.models.stylegan2.pickle_import import convert_pickle, read_network_pickle


def marker_source(marker):
    """A module source that, if anything executed it, would leave a file behind."""
    return (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('executed')\n"
        "class Generator:\n    pass\n"
    )


def networks(c_dim=0, num_fp16_res=0, conv_clamp=None):
    synthesis = {
        "channel_base": 128,
        "channel_max": 16,
        "num_fp16_res": num_fp16_res,
        "conv_clamp": conv_clamp,
    }
    G = Generator(
        12, c_dim, 10, 16, 3, mapping_kwargs={"num_layers": 2}, synthesis_kwargs=synthesis
    )
    D = Discriminator(
        c_dim, 16, 3, channel_base=128, channel_max=16, num_fp16_res=num_fp16_res,
        conv_clamp=conv_clamp, mapping_kwargs={"num_layers": 2},
    )  # fmt: skip
    randomise(G)
    randomise(D)
    return G.eval(), D.eval()


def run_main(*args):
    """The CLI in this process (faster than a subprocess); returns the exit code."""
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def reference_pngs(G, seeds, class_idx, psi):
    """generate.py's images, computed from the original weights by the reference transcription."""
    sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
    out = {}
    for seed in seeds:
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
        label = torch.zeros([1, G.c_dim])
        if G.c_dim:
            label[:, class_idx] = 1
        img = ref.generate(sd, G.to_config(), z, label, psi)
        out[seed] = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
    return out


@pytest.mark.parametrize(
    "c_dim, num_fp16_res, conv_clamp, protocol",
    [(0, 0, None, 3), (4, 0, None, 4), (0, 2, 256, 2)],
    ids=["unconditional", "conditional", "fp16-clamp"],
)
def test_pickle_convert_sample_matches_reference(
    tmp_path, monkeypatch, c_dim, num_fp16_res, conv_clamp, protocol
):
    official_pickle.install_fake_modules(monkeypatch)
    marker = tmp_path / "executed.txt"
    G, D = networks(c_dim, num_fp16_res, conv_clamp)
    pkl = official_pickle.write_network_pickle(
        tmp_path / "network-snapshot-000100.pkl", G, D, marker_source(marker), protocol=protocol
    )
    # The stream names exactly what the official files name.
    assert (
        b"torch_utils.persistence" in pkl.read_bytes()
        and b"_reconstruct_persistent_obj" in pkl.read_bytes()
    )

    g_out, d_out = tmp_path / "G.safetensors", tmp_path / "D.safetensors"
    assert run_main("gan", "convert", str(pkl), str(g_out), "--discriminator", str(d_out)) == 0
    assert not marker.exists()

    H = load_generator(g_out)
    assert H.to_config() == G.to_config()
    for name, tensor in G.state_dict().items():
        assert torch.equal(tensor, H.state_dict()[name]), name
    E = load_discriminator(d_out)
    for name, tensor in D.state_dict().items():
        assert torch.equal(tensor, E.state_dict()[name]), name

    seeds, class_idx = [0, 1, 5], (2 if c_dim else None)
    args = ["gan", "sample", "--generator", str(g_out), "--seeds", "0-1,5", "--truncation", "0.7"]
    args += ["--out", str(tmp_path / "samples"), "--grid", "--device", "cpu"]
    args += ["--class", str(class_idx)] if class_idx is not None else []
    assert run_main(*args) == 0
    for seed, expected in reference_pngs(G, seeds, class_idx, 0.7).items():
        png = np.asarray(Image.open(tmp_path / "samples" / f"seed{seed:04d}.png").convert("RGB"))
        assert png.shape == expected.shape
        assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1
    assert Image.open(tmp_path / "samples" / "grid.png").size == (32, 32)


def test_end_to_end_through_the_console_entry_point(tmp_path, monkeypatch):
    official_pickle.install_fake_modules(monkeypatch)
    marker = tmp_path / "executed.txt"
    G, D = networks()
    pkl = official_pickle.write_network_pickle(tmp_path / "net.pkl", G, D, marker_source(marker))
    proc = run_cli("gan", "convert", str(pkl), str(tmp_path / "G.safetensors"), check=True)
    assert "num_ws 6" in proc.stdout
    run_cli(
        "gan", "sample", "-g", str(tmp_path / "G.safetensors"), "--seeds", "3",
        "--out", str(tmp_path / "out"), check=True,
    )  # fmt: skip
    png = np.asarray(Image.open(tmp_path / "out" / "seed0003.png"))
    expected = reference_pngs(G, [3], None, 1.0)[3]
    assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1
    assert not marker.exists()


class Payload:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("kind", ["os.system", "exec", "eval", "nested"])
def test_code_payloads_are_refused_and_never_run(tmp_path, monkeypatch, kind):
    official_pickle.install_fake_modules(monkeypatch)
    marker = tmp_path / "pwned.txt"
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    payload = {
        "os.system": Payload(os.system, f"touch {marker}"),
        "exec": Payload(builtins.exec, code),
        "eval": Payload(builtins.eval, code),
    }.get(kind)
    if kind == "nested":  # hidden inside an otherwise normal network's constructor arguments
        G, D = networks()
        data = {
            "G_ema": official_pickle.persistent(
                G, marker_source(marker), {"z_dim": Payload(builtins.exec, code)}
            ),
            "D": official_pickle.persistent(D, marker_source(marker)),
        }
    else:
        data = {"G_ema": payload, "D": None}
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(UserError) as exc:
        convert_pickle(pkl, tmp_path / "G.safetensors")
    message = str(exc.value)
    assert "refused" in message and "Nothing from the file was executed" in message
    refused_name = {"os.system": "system", "exec": "exec", "eval": "eval", "nested": "exec"}[kind]
    assert f".{refused_name}'" in message  # e.g. 'posix.system' or '__builtin__.exec'
    assert not marker.exists() and not (tmp_path / "G.safetensors").exists()


def test_refusal_through_the_cli_is_one_line(tmp_path):
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps({"G_ema": Payload(os.system, "true")}))
    assert run_main("gan", "convert", str(pkl), str(tmp_path / "G.safetensors")) == 2


def test_records_keep_module_source_as_text(tmp_path, monkeypatch):
    official_pickle.install_fake_modules(monkeypatch)
    marker = tmp_path / "executed.txt"
    G, D = networks()
    pkl = official_pickle.write_network_pickle(tmp_path / "n.pkl", G, D, marker_source(marker))
    data = read_network_pickle(pkl)
    record = data["G_ema"]
    assert record.class_name == "Generator" and "write_text" in record.module_src
    assert record.state["_init_kwargs"]["mapping_kwargs"] == {"num_layers": 2}
    assert isinstance(record.state["_modules"]["mapping"].state["_buffers"]["w_avg"], torch.Tensor)
    assert not marker.exists()


def test_forged_tensor_shape_is_refused(tmp_path):
    class Forged:
        def __reduce__(self):
            storage = torch.zeros(4).storage()
            return (torch._utils._rebuild_tensor_v2, (storage, 0, (1000,), (1,), False, {}))

    pkl = tmp_path / "forged.pkl"
    pkl.write_bytes(pickle.dumps({"G_ema": Forged()}))
    with pytest.raises(UserError, match="exceeds its data"):
        read_network_pickle(pkl)


@pytest.mark.parametrize(
    "content, match",
    [
        (pickle.dumps({"G": 1}), "no 'G_ema' entry"),
        (pickle.dumps([1, 2]), "not a StyleGAN2-ADA network pickle"),
        (b"not a pickle at all", "cannot read"),
    ],
)
def test_wrong_files_are_user_errors(tmp_path, content, match):
    pkl = tmp_path / "x.pkl"
    pkl.write_bytes(content)
    with pytest.raises(UserError, match=match):
        convert_pickle(pkl, tmp_path / "G.safetensors")


def test_missing_pickle_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        convert_pickle(tmp_path / "missing.pkl", tmp_path / "G.safetensors")


def test_architecture_mismatch_names_the_tensors(tmp_path, monkeypatch):
    official_pickle.install_fake_modules(monkeypatch)
    G, _ = networks()
    wrong = Generator(
        12,
        0,
        10,
        16,
        3,
        mapping_kwargs={"num_layers": 3},
        synthesis_kwargs={"channel_base": 128, "channel_max": 16},
    )
    data = {
        "G_ema": official_pickle.persistent(
            wrong, "", official_pickle.official_kwargs(G.to_config())
        )
    }
    pkl = tmp_path / "m.pkl"
    pkl.write_bytes(pickle.dumps(data))
    with pytest.raises(UserError, match=r"unexpected: mapping\.fc2"):
        convert_pickle(pkl, tmp_path / "G.safetensors")


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        ("shared_reference_bomb", "describes more than 1,000,000 objects"),
        ("self_referencing_list", "nests deeper than 100 levels"),
        ("hash_bomb", "a dict key or set element that is not a plain value"),
    ],
)
def test_pickles_with_huge_object_graphs_are_refused_at_once(tmp_path, builder, message):
    import time

    from tests import hostile

    path = getattr(hostile, builder)(tmp_path / "bomb.pkl")
    assert path.stat().st_size < 1000
    start = time.monotonic()
    proc = run_cli("gan", "convert", str(path), str(tmp_path / "G.safetensors"))
    assert time.monotonic() - start < 60
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and message in proc.stderr
    assert not (tmp_path / "G.safetensors").exists()


def test_nan_w_avg_is_estimated_again_with_a_warning(tmp_path, monkeypatch):
    """An official snapshot can carry mapping.w_avg as NaN (its first batch held NaN, and a
    running mean keeps it): the generator is usable, w_avg is re-estimated as the mean w."""
    official_pickle.install_fake_modules(monkeypatch)
    G, D = networks()
    with torch.no_grad():
        expected = G.mapping(torch.randn(20_000, G.z_dim), None)[:, 0].mean(0)
        spread = G.mapping(torch.randn(2000, G.z_dim), None)[:, 0].std(0)
    G.mapping.w_avg.fill_(float("nan"))
    pkl = official_pickle.write_network_pickle(tmp_path / "n.pkl", G, D, "")
    with pytest.warns(UserWarning, match="non-finite mapping.w_avg"):
        converted, _ = convert_pickle(pkl, tmp_path / "G.safetensors")
    w_avg = load_generator(tmp_path / "G.safetensors").mapping.w_avg
    assert torch.isfinite(w_avg).all()
    torch.testing.assert_close(w_avg, converted.mapping.w_avg)
    # the mean of 10 000 latents against one of 20 000 others: sampling error only
    assert float(((w_avg - expected).abs() / spread).max()) < 0.1


def test_non_finite_weights_are_refused(tmp_path, monkeypatch):
    official_pickle.install_fake_modules(monkeypatch)
    G, D = networks()
    with torch.no_grad():
        next(p for n, p in G.named_parameters() if n.startswith("synthesis"))[0].fill_(float("inf"))
    pkl = official_pickle.write_network_pickle(tmp_path / "b.pkl", G, D, "")
    with pytest.raises(UserError, match=r"non-finite values in synthesis\..*earlier snapshot"):
        convert_pickle(pkl, tmp_path / "G.safetensors")
    assert not (tmp_path / "G.safetensors").exists()


def test_the_cli_prints_the_w_avg_notice_as_one_warning_line(tmp_path, monkeypatch):
    official_pickle.install_fake_modules(monkeypatch)
    G, D = networks()
    G.mapping.w_avg.fill_(float("nan"))
    pkl = official_pickle.write_network_pickle(tmp_path / "n.pkl", G, D, "")
    proc = run_cli("gan", "convert", str(pkl), str(tmp_path / "G.safetensors"), check=True)
    lines = [line for line in proc.stderr.splitlines() if "w_avg" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "estimated again" in lines[0]
    assert "UserNotice" not in proc.stderr and "pickle_import.py" not in proc.stderr
