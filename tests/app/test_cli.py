"""``viscoin explore`` through its entry point: every bad input is one ``error:`` line and exit code
2, the cheap checks before the model loads; a run whose data is not here, or a bundle, still opens
for uploads."""

from __future__ import annotations

import socket
import sys

import pytest

from viscoin.app import EXTRA_MESSAGE
from viscoin.app.state import explore_target, open_explorer
from viscoin.cli import main
from viscoin.config import load_config
from viscoin.errors import UserError

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


@pytest.fixture(autouse=True)
def _never_serve(monkeypatch):
    """A check that fails to stop the command must fail the test, not serve until the timeout."""

    def serve(app, sock, on_started=None):
        raise AssertionError("the command started serving")

    monkeypatch.setattr("viscoin.app.server.serve", serve)


def _fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(["explore", *args])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert captured.out == ""
    return lines[0]


def test_missing_extra(capsys, monkeypatch, tiny_run):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    assert _fails(capsys, str(tiny_run)) == f"error: {EXTRA_MESSAGE}"
    assert EXTRA_MESSAGE == "viscoin explore needs the app extra: pip install 'viscoin[app]'"


def test_bad_paths_and_options(capsys, tmp_path, tiny_run):
    assert "run directory not found" in _fails(capsys, str(tmp_path / "nope"), "--port", "0")
    assert "model file not found" in _fails(capsys, str(tmp_path / "nope.safetensors"))
    (tmp_path / "notes.txt").write_text("not a model")
    assert "is not a .safetensors model file" in _fails(capsys, str(tmp_path / "notes.txt"))
    assert "has no checkpoints/viscoin.safetensors" in _fails(capsys, str(tmp_path))
    assert "--port must be from 0 to 65535" in _fails(capsys, str(tiny_run), "--port", "70000")
    assert "--top-k must be at least 1" in _fails(capsys, str(tiny_run), "--top-k", "0")
    assert "--max-images must be at least 1" in _fails(capsys, str(tiny_run), "--max-images", "0")


def test_port_in_use(capsys, tiny_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        line = _fails(capsys, str(tiny_run), "--port", port)
    assert f"port {port} on 127.0.0.1 is in use" in line and "--port 0" in line


def test_bad_dataset_and_top_k(capsys, tiny_run):
    line = _fails(capsys, str(tiny_run), "--port", "0", "--dataset", "nosuch")
    assert "unknown dataset 'nosuch'" in line
    assert "unknown split" in _fails(capsys, str(tiny_run), "--port", "0", "--split", "val")
    assert "--top-k 7: the model has only 6 concepts" in _fails(
        capsys, str(tiny_run), "--port", "0", "--top-k", "7"
    )


def test_a_run_whose_data_is_elsewhere_serves_uploads(capsys, tmp_path, tiny_run):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(tiny_run, moved)
    missing = tmp_path / "no-cub-here"
    config = load_config("cub", ["data.resolution=32", f"data.root={missing}"])
    config.save(moved / "config.yaml")
    warnings: list[str] = []
    explorer = open_explorer(*explore_target(moved), warn=warnings.append)
    assert explorer.dataset is None and explorer.info()["dataset"] is None
    assert "the test split of cub cannot be opened here" in explorer.dataset_note
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert "serving uploads only" in warnings[0]
    # asked for by name, the data must open
    resolved = explore_target(moved, data_root=str(missing))
    with pytest.raises(UserError, match="cub"):
        open_explorer(*resolved, explicit_data=True)
    assert "cub" in _fails(capsys, str(moved), "--port", "0", "--data-root", str(missing))


def test_a_bundle_without_dataset_serves_uploads(tmp_path, tiny_run):
    from viscoin.models.viscoin import export_viscoin

    bundle = export_viscoin(
        tiny_run / "checkpoints" / "viscoin.safetensors", tmp_path / "model.safetensors"
    )
    resolved, model_file = explore_target(bundle)
    assert resolved is None and model_file == bundle
    explorer = open_explorer(resolved, model_file)
    assert explorer.dataset is None and "this bundle names no dataset" in explorer.dataset_note
    assert explorer.name == "model"
    with_data, _ = explore_target(bundle, dataset="shapes")
    assert with_data.cfg.data.name == "shapes"


def test_loopback_rules():
    from viscoin.app.server import allowed_hosts_for, is_loopback, loopback_warning, url_of

    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host) and loopback_warning(host, 1) is None, host
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        assert not is_loopback(host), host
    warning = loopback_warning("0.0.0.0", 7860)
    assert warning.startswith("warning: listening on 0.0.0.0:7860") and "no login" in warning
    assert allowed_hosts_for("127.0.0.1") == ["127.0.0.1", "localhost"]
    assert allowed_hosts_for("0.0.0.0") is None and allowed_hosts_for("::1") is None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert url_of(sock, "127.0.0.1") == f"http://127.0.0.1:{sock.getsockname()[1]}/"
