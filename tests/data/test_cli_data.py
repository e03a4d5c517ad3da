"""``viscoin data`` as a user runs it."""

from __future__ import annotations

import sys

import pytest
from PIL import Image

from tests.conftest import run_cli
from viscoin.cli import main


def test_info_shapes_through_the_entry_point():
    proc = run_cli("data", "info", "shapes", "--set", "data.options.n_train=50", check=True)
    out = proc.stdout
    assert "train images     50" in out and "test images      1000" in out
    assert "classes          10: red-solid-bare" in out
    assert "float32 (3, 64, 64) in [-1, 1]" in out
    assert "class-defining   3: body_colour, wing_pattern, head_crest" in out
    assert "Class rule" in out


def test_preview_cub_through_the_entry_point(cub_root, tmp_path):
    out = tmp_path / "grid.png"
    proc = run_cli(
        "data",
        "preview",
        "cub",
        "--data-root",
        str(cub_root),
        "--out",
        str(out),
        "--n",
        "4",
        "--set",
        "data.resolution=32",
        check=True,
    )
    assert f"wrote {out}" in proc.stdout
    with Image.open(out) as grid:
        assert grid.size == (2 + 2 * 34, 2 + 2 * 34)  # 2×2 grid of 32 px with 2 px padding


def test_missing_data_root_is_one_error_line(tmp_path):
    proc = run_cli("data", "info", "stanford_cars", "--data-root", str(tmp_path))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: stanford_cars: missing ")
    assert "Traceback" not in proc.stderr


def run_main(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_info_of_each_file_dataset(capsys, cub_root, cars_root, celeba_root, funnybirds_root):
    for name, root, expected in [
        ("cub", cub_root, "attributes       312: has_bill_shape"),
        ("stanford_cars", cars_root, "classes          3: AM General Hummer SUV 2000"),
        ("celeba_hq", celeba_root, "class-defining   1: Smiling"),
        ("funnybirds", funnybirds_root, "attributes       26: beak=beak01/yellow"),
    ]:
        code, out, err = run_main(capsys, "data", "info", name, "--data-root", str(root))
        assert code == 0, err
        assert expected in out and f"root             {root}" in out


def test_preview_writes_the_requested_file(capsys, tmp_path):
    out = tmp_path / "sub" / "shapes.jpg"
    code, _, _ = run_main(
        capsys,
        "data",
        "preview",
        "shapes",
        "--out",
        str(out),
        "--split",
        "test",
        "--n",
        "9",
        "--set",
        "data.options.n_test=20",
    )
    assert code == 0 and out.is_file()
    with Image.open(out) as grid:
        assert grid.size == (2 + 3 * 66, 2 + 3 * 66)


def test_download_without_kagglehub_exits_2(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    code, _, err = run_main(capsys, "data", "download", "cub")
    assert code == 2 and "pip install 'viscoin[data]'" in err


def test_bad_option_exits_2(capsys):
    code, _, err = run_main(capsys, "data", "info", "shapes", "--set", "data.options.size=3")
    assert code == 2 and "unknown option 'size'" in err and "n_train=5000" in err
