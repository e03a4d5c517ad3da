"""The interpretation commands as a user runs them.

The StyleGAN2 generator and the dataset registry are separate parts of the package; here the
commands run on a run directory whose model and data loaders are replaced by the tiny stand-ins of
``conftest.py`` (``test_cli_end_to_end.py`` runs them on a really trained run).
"""

import json
import re

import pytest
import torch
from PIL import Image

from tests.conftest import run_cli
from tests.interpret.conftest import make_dataset, make_model
from tests.interpret.test_target import make_run
from tests.report.test_plots import VISCOIN_RECORDS
from viscoin.cli import main
from viscoin.cli.interpret import parse_float_list, parse_int_list
from viscoin.errors import UserError


def test_logs_through_the_entry_point(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(r, allow_nan=True) + "\n" for r in VISCOIN_RECORDS) + '{"step": 3, "tor'
    )
    proc = run_cli("logs", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == ["curves-learning-rate.png", "curves-losses.png", "curves-metrics.png"]
    assert proc.stdout.count("wrote ") == 3


def test_missing_run_is_one_line_exit_2(tmp_path):
    proc = run_cli("concepts", str(tmp_path / "missing-run"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: run directory not found: {tmp_path / 'missing-run'}. "
        "Give the directory a training command made."
    ]


def _error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def _ok(*argv) -> None:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 0


def test_input_errors_before_loading(tmp_path, capsys):
    run = make_run(tmp_path, with_checkpoint=False)
    assert "no checkpoints/viscoin.safetensors" in _error(capsys, "amplify", str(run))
    assert "no checkpoints/viscoin.safetensors" in _error(capsys, "report", str(run))
    assert "not a list of integers" in _error(capsys, "amplify", str(run), "--concepts", "3,x")
    assert "only one of" in _error(capsys, "amplify", str(run), "--top-k", "2", "--concepts", "1")
    assert "--mode must be" in _error(capsys, "amplify", str(run), "--mode", "all")
    assert "not a list of integers" in _error(capsys, "heatmaps", str(run), "--images", "0;1")
    assert "metrics.jsonl not found" in _error(capsys, "logs", str(run))
    assert "--multipliers" in _error(capsys, "report", str(run), "--multipliers", "0,x")


def test_parse_lists():
    assert parse_int_list("0,4, 9", "--images") == [0, 4, 9]
    assert parse_int_list("0-2,7", "--images") == [0, 1, 2, 7]
    assert parse_float_list("0,1,2.5", "--multipliers") == [0.0, 1.0, 2.5]
    with pytest.raises(UserError, match="--multipliers"):
        parse_float_list("a", "--multipliers")
    with pytest.raises(UserError, match="empty"):
        parse_int_list(",", "--images")


@pytest.fixture
def standin_run(tmp_path, monkeypatch):
    """A run directory whose model and test split are the tiny stand-ins."""
    import viscoin.interpret.target as target_module

    run = make_run(tmp_path)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in VISCOIN_RECORDS))
    (run / "metrics.json").write_text(json.dumps({"acc_g": 0.5, "faithfulness": {"0.1": 0.2}}))
    monkeypatch.setattr(target_module, "load_target_model", lambda target, device: make_model())
    monkeypatch.setattr(target_module, "load_split", lambda target, split: make_dataset(10))
    monkeypatch.setattr(
        target_module,
        "split_loader",
        lambda target, split, dataset, batch_size=None: torch.utils.data.DataLoader(
            dataset, batch_size=batch_size or 4
        ),
    )
    return run


def test_commands_on_a_run(standin_run, capsys):
    run = str(standin_run)
    _ok("concepts", run, "--quiet")
    assert "10 test images, 6 concepts" in capsys.readouterr().out
    assert (standin_run / "concepts.json").is_file() and (standin_run / "concepts.npz").is_file()
    assert len(list((standin_run / "cache").glob("concepts-*.json"))) == 1
    assert {p.name for p in (standin_run / "figures").iterdir()} >= {
        "concept-activation.png", "class-concept.png"
    }  # fmt: skip
    _ok("concepts", run, "--quiet")
    assert "from cache" in capsys.readouterr().out

    _ok("amplify", run, "--top-k", "2", "--images", "1,3", "--multipliers", "0,1,3")
    out = capsys.readouterr().out
    assert out.count("image ") == 2
    # the file names say what they hold: split, image, concepts, mode and intervention
    (each,) = (standin_run / "amplify").glob("amplify-test-3-c*-each-isolated.png")
    strip = Image.open(each)
    _ok("amplify", run, "--concepts", "0,5", "--images", "3", "--mode", "together")
    capsys.readouterr()
    together = standin_run / "amplify" / "amplify-test-3-c0_5-together-isolated.png"
    assert Image.open(together).height < strip.height and each.is_file()  # nothing overwritten

    _ok("heatmaps", run, "--images", "0,2", "--top-k", "2", "--out", str(standin_run / "h"))
    assert "raw maps" in capsys.readouterr().out
    assert len(list((standin_run / "h").glob("heatmaps-test-2-c*.png"))) == 1
    assert (standin_run / "h" / "heatmaps-test-i0_2.npz").is_file()

    _ok("report", run, "--max-concepts", "2", "--images", "3", "--quiet")
    assert "2 concept cards" in capsys.readouterr().out
    page = (standin_run / "report.html").read_text()
    assert page.count('class="concept-card"') == 2 and "faithfulness.0.1" in page
    assert page.count('class="lambda-slider" min="0" max="6"') == 2  # the default seven steps
    _ok("report", run, "--max-concepts", "1", "--multipliers", "0,1,3", "--quiet")
    page = (standin_run / "report.html").read_text()
    assert re.findall(r'data-lambda="([^"]+)"', page) == ["0", "1", "3"]


def test_bad_indices_on_a_run(standin_run, capsys):
    run = str(standin_run)
    assert "concept index 6 is out of range" in _error(capsys, "amplify", run, "--concepts", "6")
    assert "image index 10 is out of range: the test split has 10 images" in _error(
        capsys, "heatmaps", run, "--images", "0,10"
    )
