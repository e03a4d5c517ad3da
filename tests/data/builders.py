"""Writers of tiny datasets in the exact official layouts (real JPEG/PNG files, real .mat files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}


def write_image(
    path: Path, size: tuple[int, int] = (40, 30), mode: str = "RGB", seed: int = 0
) -> Path:
    """A smooth colour gradient plus noise, ``size`` = (width, height), saved in ``mode``."""
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 256, 3)
    array = (
        base + 3 * xs[..., None] + 2 * ys[..., None] + rng.integers(0, 20, (height, width, 3))
    ) % 256
    image = Image.fromarray(array.astype(np.uint8), "RGB")
    if mode == "P":
        image = image.quantize(16)
    elif mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=FORMATS[path.suffix.lower()])
    return path


CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
CUB_ATTRIBUTES = 312


def make_cub(root: Path, per_class: int = 4, attributes: bool = True) -> Path:
    """ROOT/CUB_200_2011/... as in the Caltech archive, ROOT/attributes.txt beside it.

    Images alternate train/test (even ids train). Attribute k of image i is present when
    (i + k) % 3 == 0. Returns ROOT.
    """
    base = root / "CUB_200_2011"
    images, labels, split, boxes = [], [], [], []
    image_id = 0
    for c, name in enumerate(CUB_CLASSES, 1):
        for j in range(per_class):
            image_id += 1
            rel = f"{name}/{name.split('.')[1]}_{j:04d}_{image_id}.jpg"
            write_image(base / "images" / rel, (40 + 4 * j, 30), seed=image_id)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {int(image_id % 2 == 0)}")
            boxes.append(f"{image_id} 4.0 3.5 20.0 15.25")
    _lines(base / "images.txt", images)
    _lines(base / "image_class_labels.txt", labels)
    _lines(base / "train_test_split.txt", split)
    _lines(base / "bounding_boxes.txt", boxes)
    _lines(base / "classes.txt", [f"{i} {n}" for i, n in enumerate(CUB_CLASSES, 1)])
    if attributes:
        names = ["has_bill_shape::curved_(up_or_down)", "has_bill_shape::dagger"]
        names += [f"has_part_{k}::value_{k}" for k in range(3, CUB_ATTRIBUTES + 1)]
        _lines(root / "attributes.txt", [f"{k} {n}" for k, n in enumerate(names, 1)])
        rows = []
        for i in range(1, image_id + 1):
            for k in range(1, CUB_ATTRIBUTES + 1):
                present = int((i + k) % 3 == 0)
                # the real file has a few lines with an extra field
                extra = " 0" if (i, k) == (2, 5) else ""
                rows.append(f"{i} {k} {present} 3{extra} 12.5")
        _lines(base / "attributes" / "image_attribute_labels.txt", rows)
        _lines(base / "attributes" / "certainties.txt", ["1 not visible", "2 guessing"])
        _lines(
            base / "attributes" / "class_attribute_labels_continuous.txt",
            [" ".join(["0.0"] * CUB_ATTRIBUTES)] * len(CUB_CLASSES),
        )
    return root


CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]


def _annotations(rows: list[tuple[int, int, int, int, int, str]]) -> np.ndarray:
    """A 1×N MATLAB struct array like the devkit's ``annotations``."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    array = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, (x1, y1, x2, y2, label, fname) in enumerate(rows):
        array[0, i] = (
            np.array([[x1]], np.uint16),
            np.array([[y1]], np.uint16),
            np.array([[x2]], np.uint16),
            np.array([[y2]], np.uint16),
            np.array([[label]], np.uint8),
            np.array([fname]),
        )
    return array


def make_stanford_cars(root: Path, per_class: int = 2, kaggle_nesting: bool = False) -> Path:
    """ROOT/{cars_train, cars_test, devkit/*.mat, cars_test_annos_withlabels.mat}."""
    import scipy.io

    names = np.empty((1, len(CAR_CLASSES)), dtype=object)
    names[0, :] = CAR_CLASSES
    devkit = root / ("car_devkit/devkit" if kaggle_nesting else "devkit")
    devkit.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(devkit / "cars_meta.mat", {"class_names": names})
    for split in ("train", "test"):
        folder = root / f"cars_{split}"
        if kaggle_nesting:
            folder = folder / f"cars_{split}"
        rows = []
        for c in range(len(CAR_CLASSES)):
            for j in range(per_class):
                fname = f"{len(rows) + 1:05d}.jpg"
                write_image(folder / fname, (50, 36), seed=c * 10 + j)
                rows.append((5, 4, 30 + j, 25, c + 1, fname))
        target = (
            devkit / "cars_train_annos.mat"
            if split == "train"
            else root / "cars_test_annos_withlabels.mat"
        )
        scipy.io.savemat(target, {"annotations": _annotations(rows)})
    return root


CELEBA_ATTRIBUTES = [
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
]


def celeba_value(image: int, attribute: int) -> int:
    """The fixture's attribute rule: 1 when (image + attribute) is even, else -1."""
    return 1 if (image + attribute) % 2 == 0 else -1


def make_celeba_hq(root: Path, count: int = 20) -> Path:
    """ROOT/{CelebA-HQ-img/<i>.jpg, CelebAMask-HQ-attribute-anno.txt} (the CelebAMask-HQ release)."""
    lines = [str(count), " ".join(CELEBA_ATTRIBUTES)]
    for i in range(count):
        write_image(root / "CelebA-HQ-img" / f"{i}.jpg", (32, 32), seed=i)
        values = " ".join(str(celeba_value(i, k)) for k in range(len(CELEBA_ATTRIBUTES)))
        lines.append(f"{i}.jpg  {values}")  # two spaces after the name, as in the release
    _lines(root / "CelebAMask-HQ-attribute-anno.txt", lines)
    return root


FUNNYBIRDS_PARTS = {
    "beak": [{"model": f"beak0{i}.glb", "color": "yellow"} for i in range(1, 5)],
    "eye": [{"model": f"eye0{i}.glb"} for i in range(1, 4)],
    "foot": [{"model": f"foot0{i}.glb"} for i in range(1, 5)],
    "tail": [
        {"model": f"tail0{m}.glb", "color": c} for c in ("red", "green", "blue") for m in (1, 2, 3)
    ],
    "wing": [
        {"model": f"wing0{m}.glb", "color": c} for c in ("red", "green", "blue") for m in (1, 2)
    ],
}
FUNNYBIRDS_CLASSES = [
    {"class_idx": 0, "parts": {"beak": 0, "eye": 1, "foot": 2, "tail": 3, "wing": 4}},
    {"class_idx": 1, "parts": {"beak": 3, "eye": 0, "foot": 1, "tail": 8, "wing": 0}},
    {"class_idx": 2, "parts": {"beak": 1, "eye": 2, "foot": 0, "tail": 0, "wing": 5}},
]


def make_funnybirds(root: Path, per_class: dict[str, int] | None = None) -> Path:
    """ROOT/{train,test}/<class_idx>/<image_idx:06d>.png (RGBA) + classes/parts/dataset json.

    In the train split, image 1 has its wing removed ('placeholder'), as the render script does.
    """
    per_class = per_class or {"train": 2, "test": 1}
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(FUNNYBIRDS_CLASSES))
    (root / "parts.json").write_text(json.dumps(FUNNYBIRDS_PARTS))
    for split, count in per_class.items():
        samples = []
        for entry in FUNNYBIRDS_CLASSES:
            for _ in range(count):
                index = len(samples)
                sample = {"class_idx": entry["class_idx"], "camera_distance": 300}
                for part, variant in entry["parts"].items():
                    for key, value in FUNNYBIRDS_PARTS[part][variant].items():
                        sample[f"{part}_{key}"] = value
                if split == "train" and index == 1:
                    sample["wing_model"] = sample["wing_color"] = "placeholder"
                samples.append(sample)
                path = root / split / str(entry["class_idx"]) / f"{index:06d}.png"
                write_image(path, (48, 48), mode="RGBA", seed=index)
        (root / f"dataset_{split}.json").write_text(json.dumps(samples))
    return root


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
