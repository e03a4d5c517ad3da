"""VisCoIN trained for a few steps against classifiers of several families (a ResNet with chosen
layers, a torchvision MobileNet, a timm ViT), saved and reloaded; and through the CLI, a bare
architecture name with its weights in a plain state dict, and the refusals of bad inputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

from tests.conftest import run_cli
from tests.train.viscoin_fixtures import CLASSES, TinyImages, make_parts, tiny_config
from viscoin.models.classifier import Classifier, save_classifier
from viscoin.models.viscoin import load_viscoin
from viscoin.train.distributed import DistInfo
from viscoin.train.viscoin import ViscoinTrainer
from viscoin.utils.runs import new_run, read_metrics

CPU = DistInfo(0, 1, 0, torch.device("cpu"))
RES = 64


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return make_parts(tmp_path_factory.mktemp("g"), res=RES)[1]


def _families():
    yield "resnet-layers", lambda: Classifier("resnet18", 3), ["layer1", "layer3"]
    yield "mobilenet", lambda: Classifier("torchvision:mobilenet_v3_small", 3), None
    if _has_timm():
        yield (
            "timm-vit",
            lambda: Classifier(
                "timm:vit_tiny_patch16_224",
                3,
                options={"img_size": RES, "depth": 3, "embed_dim": 32, "num_heads": 2},
            ),
            None,
        )


def _has_timm() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("name, build, layers", list(_families()), ids=[f[0] for f in _families()])
def test_training_save_load_for_each_family(tmp_path, generator, name, build, layers):
    torch.manual_seed(0)
    f = build()
    f_file = save_classifier(f, tmp_path / "f.safetensors", CLASSES)
    cfg = tiny_config(tmp_path, iterations=2, res=RES)
    cfg.classifier.layers = layers
    run = new_run(cfg.run.runs_dir, name, prefix="v")
    trainer = ViscoinTrainer(
        cfg, run, f_file, generator, TinyImages(8, 0, RES), TinyImages(4, 1, RES), CPU
    )
    expected = Classifier(**{**f.config(), "layers": layers or f.layers}).feature_shapes(RES)
    psi = trainer.core.extractor
    assert psi.in_channels == [c for c, _, _ in expected]
    assert psi.in_sizes == [h for _, h, _ in expected]
    trainer.fit(progress=False)
    records = [r for r in read_metrics(run.metrics) if r["split"] == "train"]
    assert len(records) == 2 and all(torch.isfinite(torch.tensor(r["total"])) for r in records)
    model = load_viscoin(run.checkpoints / "viscoin.safetensors")
    assert model.classifier.layers == (layers or f.layers)
    images = TinyImages(2, 3, RES).images
    out = model(images)
    assert out.concept_maps.shape == (2, 6, 3, 3) and out.g_logits.shape == (2, 3)
    assert torch.equal(out.f_logits, f.eval()(images))
    assert model.reconstruct(images).shape == (2, 3, RES, RES)


DATA = [
    "--config", "shapes", "--set", f"data.resolution={RES}", "--set", "data.options.n_train=16",
    "--set", "data.options.n_test=8", "--set", "data.num_workers=0", "--device", "cpu",
    "--set", "viscoin.n_concepts=4", "--set", "viscoin.channels=8", "--set", "viscoin.real_batch=2",
    "--set", "viscoin.fake_batch=2", "--set", "viscoin.eval_every=0", "--set", "viscoin.lpips=none",
    "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def mobilenet_weights(tmp_path_factory):
    """A plain state dict of a torchvision MobileNet for the shapes dataset's classes."""
    from viscoin.config import load_config
    from viscoin.data import build_dataset

    classes = build_dataset(load_config("shapes").data, "test").classes
    folder = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=len(classes))
    torch.save(net.state_dict(), folder / "m.pt")
    other = torchvision.models.mobilenet_v3_small(num_classes=len(classes) + 1)
    torch.save(other.state_dict(), folder / "other.pt")
    return folder


def test_cli_trains_against_a_bare_architecture(tmp_path, generator, mobilenet_weights):
    proc = run_cli(
        "train", "viscoin", *DATA, "--classifier", "torchvision:mobilenet_v3_small",
        "--set", f"classifier.weights={mobilenet_weights / 'm.pt'}", "--layers",
        "features.3,features.8", "--generator", str(generator), "--iterations", "2",
        "--runs-dir", str(tmp_path), "--name", "v",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "v"
    model = load_viscoin(run / "checkpoints" / "viscoin.safetensors")
    assert model.classifier.arch == "torchvision:mobilenet_v3_small"
    assert model.classifier.layers == ["features.3", "features.8"]
    assert model.core.extractor.in_channels == [24, 48]
    reference = torchvision.models.mobilenet_v3_small(num_classes=model.classifier.num_classes)
    reference.load_state_dict(torch.load(mobilenet_weights / "m.pt", weights_only=True))
    assert torch.equal(
        model.classifier.backbone.classifier[3].weight, reference.classifier[3].weight
    )


def test_cli_refuses_unknown_layers_in_one_line(tmp_path, generator, mobilenet_weights):
    proc = run_cli(
        "train", "viscoin", *DATA, "--classifier", "torchvision:mobilenet_v3_small",
        "--set", f"classifier.weights={mobilenet_weights / 'm.pt'}",
        "--layers", "features.3,features.99", "--generator", str(generator),
        "--iterations", "1", "--runs-dir", str(tmp_path), "--name", "v",
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and "has no layer features.99 (close: " in errors[0], proc.stderr
    assert "features.12, avgpool" in errors[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "case, match",
    [
        ("classes", "is a torchvision:mobilenet_v3_small for 4 classes, but the dataset has 3"),
        ("too-small", "too small for Ψ's 3×3 concept maps (features.12 1×1)"),
        ("no-weights", "needs the trained weights as a local file"),
        ("missing-weights", "classifier weights not found"),
    ],
)
def test_bare_architectures_refuse_bad_settings(tmp_path, case, match):
    from viscoin.config import load_config
    from viscoin.errors import UserError
    from viscoin.train.viscoin import wrap_classifier

    classes = ["a", "b", "c"]
    count = len(classes) + (case == "classes")
    net = torchvision.models.mobilenet_v3_small(num_classes=count)
    torch.save(net.state_dict(), tmp_path / "m.pt")
    weights = tmp_path / ("absent.pt" if case == "missing-weights" else "m.pt")
    overrides = [] if case == "no-weights" else [f"classifier.weights={weights}"]
    if case == "too-small":
        overrides += ["classifier.layers=features.12", "data.resolution=32"]
    cfg = load_config("shapes", overrides)
    with pytest.raises(UserError) as info:
        wrap_classifier("torchvision:mobilenet_v3_small", cfg, classes, tmp_path / "f.safetensors")
    assert match in str(info.value)
    assert not (tmp_path / "f.safetensors").exists()


def test_classifier_argument_refuses_what_is_no_classifier_file(tmp_path, generator):
    from viscoin.errors import UserError
    from viscoin.train.viscoin import classifier_file

    with pytest.raises(UserError, match="holds a 'stylegan2.generator' model, but a 'classifier'"):
        from viscoin.models.classifier import load_classifier

        load_classifier(classifier_file(generator))
    torch.save({"w": torch.zeros(1)}, tmp_path / "f.pt")
    with pytest.raises(UserError, match="name the architecture and the file"):
        classifier_file(tmp_path / "f.pt")
    with pytest.raises(UserError, match="classifier not found"):
        classifier_file(tmp_path / "absent.safetensors")
