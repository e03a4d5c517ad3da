"""Downloads go through kagglehub only on request; here kagglehub is missing, failing or faked."""

from __future__ import annotations

import sys
import types

import pytest

from tests.data import builders
from viscoin.config import DataConfig
from viscoin.data import build_dataset
from viscoin.data.download import KAGGLE_HANDLES, download_dataset, kagglehub_candidates
from viscoin.errors import UserError


def fake_kagglehub(monkeypatch, download):
    module = types.ModuleType("kagglehub")
    module.dataset_download = download
    monkeypatch.setitem(sys.modules, "kagglehub", module)


def test_without_kagglehub_the_error_says_how_to_install_or_place_files(monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import kagglehub → ImportError
    with pytest.raises(UserError) as info:
        download_dataset("cub")
    message = str(info.value)
    assert "pip install 'viscoin[data]'" in message
    assert "kaggle.com/datasets/wenewone/cub2002011" in message
    assert "CUB_200_2011/{images.txt" in message and "--data-root" in message


def test_a_failing_download_is_a_user_error(monkeypatch):
    def offline(handle):
        raise ConnectionError("no network")

    fake_kagglehub(monkeypatch, offline)
    with pytest.raises(UserError, match=r"download of kaggle dataset .*failed \(ConnectionError"):
        download_dataset("stanford_cars")


def test_download_finds_the_layout_in_the_cache_and_links_root(tmp_path, monkeypatch):
    cache = tmp_path / "kagglehub"
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    calls = []

    def download(handle):
        # what kagglehub does: extract the archive under $KAGGLEHUB_CACHE/datasets/.../versions/N
        calls.append(handle)
        owner, slug = handle.split("/")
        target = cache / "datasets" / owner / slug / "versions" / "3"
        builders.make_celeba_hq(target / "CelebAMask-HQ", count=4)
        return str(target)

    fake_kagglehub(monkeypatch, download)
    found = download_dataset("celeba_hq", tmp_path / "mydata" / "celeba")
    assert calls == ["ipythonx/celebamaskhq"]
    assert found.name == "CelebAMask-HQ" and found.parent.name == "3"
    assert (tmp_path / "mydata" / "celeba").resolve() == found.resolve()
    # found again without any root, through the kagglehub cache
    assert kagglehub_candidates("celeba_hq")[0].name == "3"
    assert (
        len(build_dataset(DataConfig(name="celeba_hq", options={"test_fraction": 0.25}), "test"))
        == 1
    )
    # and through the link
    cfg = DataConfig(
        name="celeba_hq",
        root=str(tmp_path / "mydata" / "celeba"),
        options={"test_fraction": 0.25},
    )
    assert len(build_dataset(cfg, "train", augment=False)) == 3
    # a second download to the same link is fine; another existing path is refused
    assert download_dataset("celeba_hq", tmp_path / "mydata" / "celeba") == found
    (tmp_path / "taken").mkdir()
    with pytest.raises(UserError, match="already exists"):
        download_dataset("celeba_hq", tmp_path / "taken")


def test_download_with_an_unexpected_layout(tmp_path, monkeypatch):
    (tmp_path / "odd").mkdir()
    fake_kagglehub(monkeypatch, lambda handle: str(tmp_path / "odd"))
    with pytest.raises(UserError, match="no folder there matches"):
        download_dataset("cub")


def test_datasets_without_a_download(monkeypatch):
    fake_kagglehub(monkeypatch, lambda handle: pytest.fail("must not download"))
    with pytest.raises(UserError, match="generated on the fly"):
        download_dataset("shapes")
    with pytest.raises(UserError, match="no download source.*Downloadable: celeba_hq, cub"):
        download_dataset("funnybirds")
    assert set(KAGGLE_HANDLES) == {"cub", "stanford_cars", "celeba_hq"}
