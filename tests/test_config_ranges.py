"""Every config value is range-checked when the config is assembled, before it reaches torch."""

import pytest

from tests.conftest import DATA, run_cli
from viscoin.config import Config, apply_overrides, available_presets, load_config
from viscoin.errors import UserError

BAD = [
    "viscoin.n_concepts=0", "data.batch_size=0", "viscoin.grad_accum=0", "viscoin.log_every=0",
    "viscoin.channels=0", "viscoin.lr=.nan", "viscoin.lr=-1e-4", "classifier.lr=.inf",
    "data.num_workers=-1", "viscoin.dropout=1", "viscoin.dropout=-0.1", "classifier.epochs=0",
    "viscoin.iterations=0", "viscoin.real_batch=0", "viscoin.mid=1", "viscoin.decay_factor=0",
    "classifier.val_fraction=1", "gan.batch_size=0", "gan.lr=-1", "run.seed=-1",
    "viscoin.eval_every=-1", "viscoin.checkpoint_every=-5", "viscoin.grad_accum=16",
    "gan.r1_interval=0", "gan.pl_interval=-1", "gan.ada_interval=0", "gan.snapshot_every=0",
    "gan.mbstd_group_size=0", "gan.compile_mode=fast", "gan.d_architecture=unet",
    "gan.cuda_graphs=maybe", "viscoin.amp=fp16", "viscoin.compile=maybe",
]  # fmt: skip


@pytest.mark.parametrize("override", BAD)
def test_a_bad_value_names_its_field(override):
    field = override.partition("=")[0]
    with pytest.raises(UserError, match=rf"^{field} must be .*, got ") as info:
        apply_overrides(Config(), [override])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override",
    ["viscoin.eval_every=0", "viscoin.checkpoint_every=0", "viscoin.fake_batch=0",
     "classifier.lr_step=0", "viscoin.dropout=0", "classifier.val_fraction=0", "gan.lr=0"],
)  # fmt: skip
def test_zero_where_it_means_off_is_kept(override):
    apply_overrides(Config(), [override])


@pytest.mark.parametrize("preset", available_presets())
def test_every_shipped_preset_validates(preset):
    load_config(preset)
    load_config(preset, ["gan.preset=auto"])


def test_the_cli_lists_every_problem_at_once(tmp_path):
    proc = run_cli(
        "train", "classifier", *DATA, "--set", "classifier.epochs=0", "--set", "data.batch_size=0",
        "--set", "classifier.lr=-1", "--runs-dir", str(tmp_path), "--name", "f",
    )  # fmt: skip
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line.startswith("error: 3 config values are out of range:") and "\n" not in line
    for part in ("classifier.epochs must be at least 1, got 0", "data.batch_size", "classifier.lr"):
        assert part in line
    assert not (tmp_path / "f").exists()


def test_coarse_beyond_the_generators_rows_is_refused_where_omega_is_built():
    from viscoin.models import stylegan2
    from viscoin.models.classifier import Classifier
    from viscoin.models.viscoin import build_core

    generator = stylegan2.Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3,
        mapping_kwargs={"num_layers": 1}, channel_base=64, channel_max=8,
    )  # fmt: skip
    with pytest.raises(UserError, match=rf"viscoin.coarse=9 .*num_ws={generator.num_ws}"):
        build_core(Classifier("resnet18", 10), generator, 32, 4, 8, coarse=9)


def test_amplify_multipliers_must_be_finite():
    from viscoin.cli.interpret import parse_float_list

    assert parse_float_list("0,1,2", "--multipliers") == [0.0, 1.0, 2.0]
    with pytest.raises(UserError, match="--multipliers must hold finite numbers, got nan, inf"):
        parse_float_list("nan,1,inf", "--multipliers")


def test_a_binary_config_file_is_one_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"run:\n  seed: \xff\xfe\x00\x81\n")
    with pytest.raises(UserError, match=r"bad\.yaml is not UTF-8 text \(byte 13\)"):
        load_config(path)
    proc = run_cli("config", "show", "--config", str(path))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
