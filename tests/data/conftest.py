"""Dataset fixtures: tiny copies of each official layout, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data import builders


@pytest.fixture(autouse=True)
def _no_default_data(tmp_path_factory, monkeypatch) -> None:
    # Default roots and the kagglehub cache point at empty folders: no test reads the user's data.
    empty = tmp_path_factory.mktemp("empty-home")
    monkeypatch.setenv("VISCOIN_DATA", str(empty / "data"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(empty / "kagglehub"))


@pytest.fixture(scope="session")
def cub_root(tmp_path_factory) -> Path:
    return builders.make_cub(tmp_path_factory.mktemp("cub"))


@pytest.fixture(scope="session")
def cars_root(tmp_path_factory) -> Path:
    return builders.make_stanford_cars(tmp_path_factory.mktemp("cars"))


@pytest.fixture(scope="session")
def celeba_root(tmp_path_factory) -> Path:
    return builders.make_celeba_hq(tmp_path_factory.mktemp("celeba"))


@pytest.fixture(scope="session")
def funnybirds_root(tmp_path_factory) -> Path:
    return builders.make_funnybirds(tmp_path_factory.mktemp("funnybirds"))
