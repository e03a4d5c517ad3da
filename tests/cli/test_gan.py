"""``viscoin gan ...`` options and errors, run in-process."""

import pytest

from viscoin.cli import main
from viscoin.cli.gan import parse_seeds
from viscoin.errors import UserError
from viscoin.models.stylegan2 import Discriminator, Generator, save_discriminator, save_generator


@pytest.mark.parametrize(
    "text, seeds",
    [("0-3", [0, 1, 2, 3]), ("1,5,9", [1, 5, 9]), ("2, 7-8,0", [2, 7, 8, 0]), ("42", [42])],
)
def test_seed_syntax(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "1,,2", "-4"])
def test_bad_seeds_are_user_errors(text):
    with pytest.raises(UserError, match="--seeds"):
        parse_seeds(text)


def run(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return exc.value.code, capsys.readouterr()


def tiny(tmp_path):
    G = Generator(4, 0, 4, 8, 3, synthesis_kwargs={"channel_base": 32, "channel_max": 4})
    return save_generator(G, tmp_path / "G.safetensors")


def test_sample_errors_exit_2_with_one_line(tmp_path, capsys):
    path = tiny(tmp_path)
    out = str(tmp_path / "out")
    code, io = run(capsys, "gan", "sample", "-g", str(path), "--seeds", "x", "--out", out)
    assert code == 2 and io.err.startswith("error: --seeds")
    code, io = run(capsys, "gan", "sample", "-g", str(path), "--noise-mode", "loud", "--out", out)
    assert code == 2 and "--noise-mode" in io.err
    code, io = run(capsys, "gan", "sample", "-g", str(tmp_path / "nope.safetensors"), "--out", out)
    assert code == 2 and "checkpoint not found" in io.err
    D = Discriminator(0, 8, 3, channel_base=32, channel_max=4)
    d_path = save_discriminator(D, tmp_path / "D.safetensors")
    code, io = run(capsys, "gan", "sample", "-g", str(d_path), "--out", out)
    assert code == 2 and "'stylegan2.discriminator' model" in io.err
    code, io = run(capsys, "gan", "convert", str(tmp_path / "missing.pkl"), str(tmp_path / "x"))
    assert code == 2 and "network pickle not found" in io.err
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"mine")
    code, io = run(capsys, "gan", "sample", "-g", str(path), "--out", str(taken))
    assert (
        code == 2
        and io.err
        == f"error: --out {taken} is a file; give a folder for the images (it is made if missing).\n"
    )
    assert taken.read_bytes() == b"mine"


def test_sample_writes_official_names_and_grid(tmp_path, capsys):
    path = tiny(tmp_path)
    code, io = run(
        capsys, "gan", "sample", "-g", str(path), "--seeds", "3,10-11", "--out", str(tmp_path / "o"),
        "--grid", "--class", "1",
    )  # fmt: skip
    assert code == 0 and "ignored" in io.err
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["grid.png", "seed0003.png", "seed0010.png", "seed0011.png"]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("gan.augment=bgc", "unknown gan.augment='bgc': use 'ada'"),
        ("gan.augment=fixed:2", "gan.augment='fixed:2': the fixed probability must be"),
        ("gan.ada_target=1.5", "gan.ada_target=1.5 must be strictly between 0 and 1"),
    ],
)
def test_train_gan_rejects_bad_augmentation_settings(tmp_path, capsys, setting, message):
    code, io = run(
        capsys, "train", "gan", "--config", "shapes", "--set", setting,
        "--runs-dir", str(tmp_path), "--name", "g", "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert code == 2 and io.err.startswith("error: ") and message in io.err
    assert not (tmp_path / "g").exists()  # refused before a run directory was made
