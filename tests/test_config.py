from pathlib import Path

import pytest
import yaml

from viscoin.config import (
    D_ARCHITECTURES,
    Config,
    apply_overrides,
    available_presets,
    load_config,
)
from viscoin.errors import UserError


def test_presets_load_with_paper_values():
    assert {"cub", "stanford_cars", "celeba_hq", "funnybirds", "shapes"} <= set(available_presets())
    cub = load_config("cub")
    assert cub.data.name == "cub"
    assert cub.classifier.lr == pytest.approx(1e-4) and cub.classifier.epochs == 30
    assert (cub.viscoin.alpha, cub.viscoin.beta, cub.viscoin.gamma, cub.viscoin.delta) == (
        0.5,
        3.0,
        0.1,
        0.2,
    )
    assert cub.viscoin.iterations == 100_000 and cub.viscoin.n_concepts == 256
    cars = load_config("stanford_cars")
    assert (
        cars.classifier.optimizer == "sgd"
        and cars.classifier.lr == 0.1
        and cars.classifier.lr_step == 30
    )
    assert load_config("celeba_hq").viscoin.iterations == 50_000
    # ADA for the GANs of real datasets; the shapes preset keeps the settings its shipped
    # generator was trained with (benchmarks/train_shapes_generator.sh): no augmentation.
    for name in ("cub", "stanford_cars", "celeba_hq"):
        assert load_config(name).gan.augment == "ada", name
    assert load_config("shapes").gan.augment == "none"


def test_overrides_are_typed():
    cfg = load_config(
        "shapes",
        [
            "viscoin.lr=3e-4",
            "data.resolution=32",
            "gan.betas=[0.1, 0.9]",
            "viscoin.mid=5",
            "run.device=cpu",
            "data.options.n_train=100",
        ],
    )
    assert cfg.viscoin.lr == pytest.approx(3e-4) and isinstance(cfg.viscoin.lr, float)
    assert cfg.data.resolution == 32
    assert cfg.gan.betas == (0.1, 0.9)
    assert cfg.viscoin.mid == 5
    assert cfg.data.options == {"n_train": 100}
    # the original is untouched
    base = load_config("shapes")
    assert apply_overrides(base, ["data.resolution=16"]).data.resolution == 16
    assert base.data.resolution == 64


@pytest.mark.parametrize(
    "override, message",
    [
        ("viscoin.nope=1", "unknown field 'viscoin.nope'"),
        ("bogus.x=1", "unknown config section 'bogus'"),
        ("data.resolution=big", "data.resolution must be of type int"),
        ("viscoin.channels_last=maybe", "viscoin.channels_last must be of type bool"),
        ("noequals", "must look like section.field=value"),
    ],
)
def test_bad_overrides_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        load_config("shapes", [override])


def test_save_and_reload_round_trip(tmp_path: Path):
    cfg = load_config("cub", ["viscoin.lr=2e-4", "gan.conv_clamp=256"])
    cfg.save(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["viscoin"]["lr"] == 2e-4


def test_unknown_preset_and_bad_yaml(tmp_path: Path):
    with pytest.raises(UserError, match="unknown config 'nope'"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("data:\n  colour: red\n")
    with pytest.raises(UserError, match="unknown field 'data.colour'"):
        load_config(wrong)


def test_default_config_is_complete():
    cfg = Config()
    assert set(cfg.to_dict()) == {"run", "data", "classifier", "gan", "viscoin"}


@pytest.mark.parametrize("resolution, batch", [(32, 32), (64, 32), (256, 16)])
def test_gan_preset_auto_follows_the_official_formulas(resolution, batch):
    g = load_config(None, ["gan.preset=auto", f"gan.resolution={resolution}"]).gan
    assert g.batch_size == batch == max(min(min(4096 // resolution, 32), 64), 1)
    assert g.mbstd_group_size == min(batch, 4) == 4
    assert g.channel_base == 16384 and g.channel_max == 512 and g.mapping_layers == 2
    assert g.lr == 0.0025
    assert g.r1_gamma == pytest.approx(0.0002 * resolution**2 / batch)
    assert g.ema_kimg == pytest.approx(batch * 10 / 32) and g.ema_rampup == 0.05
    assert g.resolution == resolution and g.preset == "auto"


# StyleGAN2-ADA's train.py, its `cfg_specs` table: (mb, mbstd, fmaps, lrate, gamma, ema, ramp, map)
TRAIN_PY_CFG_SPECS = {
    "stylegan2": (32, 4, 1, 0.002, 10, 10, None, 8),
    "paper256": (64, 8, 0.5, 0.0025, 1, 20, None, 8),
    "paper512": (64, 8, 1, 0.0025, 0.5, 20, None, 8),
    "paper1024": (32, 4, 1, 0.002, 2, 10, None, 8),
    "cifar": (64, 32, 1, 0.0025, 0.01, 500, 0.05, 2),
}


@pytest.mark.parametrize("name", sorted(TRAIN_PY_CFG_SPECS))
def test_gan_presets_are_train_py_configurations(name):
    mb, mbstd, fmaps, lrate, gamma, ema, ramp, mapping = TRAIN_PY_CFG_SPECS[name]
    g = load_config(None, [f"gan.preset={name}", "gan.resolution=256"]).gan
    assert (g.batch_size, g.mbstd_group_size, g.channel_base) == (mb, mbstd, fmaps * 32768)
    assert (g.lr, g.r1_gamma, g.ema_kimg, g.ema_rampup) == (lrate, gamma, ema, ramp)
    assert g.mapping_layers == mapping and g.channel_max == 512 and g.resolution == 256
    # train.py's loss defaults, which only its cifar configuration changes (with D 'orig')
    cifar = name == "cifar"
    assert (g.pl_weight, g.style_mixing) == ((0.0, 0.0) if cifar else (2.0, 0.9))
    assert g.d_architecture == ("orig" if cifar else "resnet")
    # values set explicitly still win
    assert load_config(None, [f"gan.preset={name}", "gan.batch_size=8"]).gan.batch_size == 8


# The gan section of the digits run that 'small' is (BENCHMARKS.md, "A generator of real digits":
# 'auto' at 32 px with these values set by hand), as its config.yaml recorded it.
DIGITS_RUN_GAN = dict(
    resolution=32, z_dim=128, w_dim=128, mapping_layers=2, channel_base=4096, channel_max=128,
    batch_size=256, lr=0.0025, betas=(0.0, 0.99), r1_gamma=0.1, r1_interval=16, pl_weight=2.0,
    pl_interval=4, ema_kimg=10.0, ema_rampup=0.05, style_mixing=0.9, mbstd_group_size=4,
    d_architecture="resnet",
)  # fmt: skip


def test_gan_preset_small_is_the_measured_digits_recipe():
    g = load_config(None, ["gan.preset=small", "gan.resolution=32"]).gan
    assert {k: getattr(g, k) for k in DIGITS_RUN_GAN} == DIGITS_RUN_GAN
    assert g.preset == "small"
    # other resolutions: auto's formulas for what small does not set, explicit values still win
    g = load_config(None, ["gan.preset=small", "gan.resolution=64", "gan.batch_size=128"]).gan
    assert (g.batch_size, g.channel_base, g.z_dim, g.mapping_layers) == (128, 4096, 128, 2)


def test_gan_d_architecture_builds_that_discriminator():
    from viscoin.models.stylegan2.synthesis import ARCHITECTURES
    from viscoin.train.gan import build_networks

    assert set(D_ARCHITECTURES) == set(ARCHITECTURES)
    tiny = ["gan.resolution=16", "gan.channel_base=64", "gan.channel_max=8", "gan.z_dim=8"]
    g = load_config(None, ["gan.preset=cifar", *tiny, "gan.w_dim=8"]).gan
    _, D = build_networks(g, 3, 0)
    assert D.to_config()["architecture"] == "orig" and not hasattr(D.b16, "skip")
    _, D = build_networks(load_config(None, tiny + ["gan.w_dim=8"]).gan, 3, 0)
    assert D.to_config()["architecture"] == "resnet" and hasattr(D.b16, "skip")
    with pytest.raises(UserError, match="gan.d_architecture must be resnet or orig or skip"):
        load_config(None, ["gan.d_architecture=residual"])


def test_gan_preset_auto_lets_explicit_values_win(tmp_path: Path):
    # --set wins over auto; the preset file's gan section too (shapes: 64 px, batch 64, base 2048).
    g = load_config("shapes", ["gan.preset=auto", "gan.r1_gamma=0.5"]).gan
    assert (g.batch_size, g.channel_base, g.r1_gamma) == (64, 2048, 0.5)
    assert g.mapping_layers == 2 and g.lr == 0.0025
    # what the file leaves unset comes from auto at the file's resolution (64 px: batch 32)
    path = tmp_path / "a.yaml"
    path.write_text("gan:\n  preset: auto\n  resolution: 64\n")
    g = load_config(path).gan
    assert g.batch_size == 32 and g.r1_gamma == pytest.approx(0.0002 * 64**2 / 32)
    assert load_config(None, ["gan.preset=auto", "gan.resolution=512"]).gan.channel_base == 32768
    assert load_config(None).gan.preset == "none"
    with pytest.raises(UserError, match="unknown gan.preset='fast'"):
        load_config(None, ["gan.preset=fast"])
