"""The CLI as a user runs it: through ``python -m viscoin`` and the console script."""

import shutil
import subprocess

import pytest

from tests.conftest import run_cli


def test_help_lists_commands():
    proc = run_cli("--help", check=True)
    for command in (
        "info",
        "train",
        "test",
        "config",
        "demo",
        "evaluate",
        "export",
        "to-pickle",
        "concept-heatmaps",
        "explain",
    ):
        assert command in proc.stdout


def test_info_reports_versions_and_devices():
    proc = run_cli("info", check=True)
    assert "torch" in proc.stdout and "devices" in proc.stdout and "lpips" in proc.stdout


def test_user_error_in_process_exits_2(capsys):
    from viscoin.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["config", "show", "--set", "viscoin.nope=1"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: --set: unknown field 'viscoin.nope'")


def test_config_show_applies_overrides():
    proc = run_cli("config", "show", "--config", "cub", "--set", "viscoin.lr=3e-4", check=True)
    assert "lr: 0.0003" in proc.stdout and "name: cub" in proc.stdout


def test_user_error_through_entry_point(tmp_path):
    proc = run_cli("config", "show", "--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: config file not found: {tmp_path / 'missing.yaml'}. Give an existing YAML file or a preset name."
    ]
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(shutil.which("viscoin") is None, reason="console script not on PATH")
def test_console_script():
    proc = subprocess.run(["viscoin", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "VisCoIN" in proc.stdout


def test_version():
    import viscoin

    proc = run_cli("--version", check=True)
    assert proc.stdout.strip() == f"viscoin {viscoin.__version__}"


def test_help_shows_extras_in_brackets():
    # rich markup would read "[data]" as a style tag and print "pip install 'viscoin'"
    proc = run_cli("data", "download", "--help", check=True)
    assert "pip install 'viscoin[data]'" in " ".join(proc.stdout.split())


def test_demo_preset_is_shown():
    proc = run_cli("config", "show", "--config", "demo", check=True)
    assert "translator_input_norm: batch" in proc.stdout and "n_train: 4000" in proc.stdout
