"""Dataset downloads on request (``viscoin data download``), through kagglehub, and finding a
download in the kagglehub cache so that a downloaded dataset is used without further setup.

kagglehub is the optional extra ``viscoin[data]``. It caches under ``$KAGGLEHUB_CACHE`` (default
``~/.cache/kagglehub``) as ``datasets/<owner>/<name>/versions/<n>/``. Nothing here runs unless a
user asks for a download; tests never download.
"""

from __future__ import annotations

import os
from pathlib import Path

from viscoin.errors import UserError

# Kaggle mirrors of the official archives, chosen because they keep the official file layout:
#   cub: CUB_200_2011/ as in the Caltech archive (with attributes/ and parts/);
#   stanford_cars: the torchvision layout stanford_cars/{cars_train,cars_test,devkit,
#     cars_test_annos_withlabels.mat} (the popular jessicali9530 mirror lacks the test labels);
#   celeba_hq: the CelebAMask-HQ release, CelebAMask-HQ/{CelebA-HQ-img,
#     CelebAMask-HQ-attribute-anno.txt,...}.
KAGGLE_HANDLES: dict[str, str] = {
    "cub": "wenewone/cub2002011",
    "stanford_cars": "rickyyyyyyy/torchvision-stanford-cars",
    "celeba_hq": "ipythonx/celebamaskhq",
}


def kagglehub_cache_dir() -> Path:
    """kagglehub's cache folder: ``$KAGGLEHUB_CACHE`` or ``~/.cache/kagglehub``."""
    env = os.environ.get("KAGGLEHUB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kagglehub"


def kagglehub_candidates(name: str) -> list[Path]:
    """Cached download folders of dataset ``name``, newest version first (may be empty)."""
    handle = KAGGLE_HANDLES.get(name)
    if handle is None:
        return []
    owner, slug = handle.split("/")
    base = kagglehub_cache_dir() / "datasets" / owner / slug
    versions = base / "versions"
    if not versions.is_dir():
        return [base] if base.is_dir() else []
    numbered = [p for p in versions.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(numbered, key=lambda p: int(p.name), reverse=True)


def download_hint(name: str) -> str:
    """What to do when dataset ``name`` is missing: download it, or point at a copy."""
    if name in KAGGLE_HANDLES:
        return (
            f"Run 'viscoin data download {name}', or pass --data-root DIR "
            "(data.root) pointing at a folder with that layout."
        )
    return "Pass --data-root DIR (data.root) pointing at a folder with that layout."


def manual_instructions(name: str) -> str:
    """Where to put the files by hand, for a dataset that cannot be downloaded here."""
    from viscoin.data.registry import dataset_class, default_root

    cls = dataset_class(name)
    source = (
        f"https://www.kaggle.com/datasets/{KAGGLE_HANDLES[name]} (or the official archive)"
        if name in KAGGLE_HANDLES
        else "the dataset's official page"
    )
    return (
        f"Get {name} from {source}, extract it so that the folder matches {cls.layout}, "
        f"and put it at {default_root(name)} or pass --data-root DIR."
    )


def download_dataset(name: str, root: str | Path | None = None) -> Path:
    """Download dataset ``name`` with kagglehub and return the folder the dataset reads.

    With ``root``, a symlink ``root`` → that folder is made, so ``--data-root root`` works.
    Without, the kagglehub cache is found automatically by :func:`build_dataset`.
    """
    from viscoin.data.registry import dataset_class, find_layout_root

    cls = dataset_class(name)
    if not cls.needs_root:
        raise UserError(f"the '{name}' dataset is generated on the fly; nothing to download.")
    if name not in KAGGLE_HANDLES:
        raise UserError(
            f"'{name}' has no download source here. {manual_instructions(name)} "
            f"Downloadable: {', '.join(sorted(KAGGLE_HANDLES))}."
        )
    try:
        import kagglehub
    except ImportError:
        raise UserError(
            "downloads need kagglehub: pip install 'viscoin[data]'. Or by hand: "
            + manual_instructions(name)
        ) from None
    handle = KAGGLE_HANDLES[name]
    try:
        path = Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # network, credentials, quota: all end the same way for the user
        raise UserError(
            f"download of kaggle dataset {handle} failed ({type(exc).__name__}: {exc}). "
            + manual_instructions(name)
        ) from None
    found = find_layout_root(cls, path)
    if found is None:
        raise UserError(
            f"kagglehub downloaded {handle} to {path}, but no folder there matches the expected "
            f"layout {cls.layout}. Rearrange it by hand and pass --data-root DIR."
        )
    if root is not None:
        _link(Path(root).expanduser(), found)
    return found


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    if link.exists() or link.is_symlink():
        raise UserError(
            f"{link} already exists. Remove it or choose another --root; "
            f"the dataset is at {target}."
        )
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(target, target_is_directory=True)
    except OSError as exc:
        raise UserError(
            f"cannot create the link {link} -> {target} ({exc}). Pass --data-root {target} instead."
        ) from None
