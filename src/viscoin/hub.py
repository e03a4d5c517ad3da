"""Sharing a trained ensemble: a self-contained folder with a model card, locally or on the Hub.

``save_pretrained(RUN, DIR)`` writes ``DIR/viscoin.safetensors`` (Ψ, Θ, Ω with the classifier and
the generator embedded: one file that rebuilds everything, no code), ``DIR/README.md`` (a model
card generated from the run: data, architecture, every headline metric beside its null, the
settings) and the run's ``config.yaml`` and ``metrics.json`` when it has them.
``from_pretrained(DIR or "org/name")`` loads it back; a Hub name goes through ``huggingface_hub``
(the optional ``hub`` extra), which honours ``HF_HUB_OFFLINE=1`` and its local cache, so a model
fetched once loads offline. ``push_to_hub(RUN, "org/name")`` uploads the same folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from viscoin.errors import UserError

if TYPE_CHECKING:
    import torch

    from viscoin.models.viscoin import Viscoin

MODEL_FILE = "viscoin.safetensors"
CARD_FILE = "README.md"
SIDE_FILES = ("config.yaml", "metrics.json")


def save_pretrained(
    source: str | os.PathLike, out_dir: str | os.PathLike, repo_id: str | None = None
) -> Path:
    """Write the shareable folder of a VisCoIN run or model file ``source`` into ``out_dir``
    (created; files already there with the same names are replaced) → ``out_dir``. ``repo_id``:
    the Hub name the model card's example loads (default: the folder)."""
    from viscoin.interpret.target import checkpoint_run, resolve_model_file
    from viscoin.models.viscoin import export_viscoin
    from viscoin.utils.checkpoint import load_checkpoint
    from viscoin.utils.io import atomic_write_text

    model_file, _ = resolve_model_file(source)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file: give a folder for the pretrained model.")
    out.mkdir(parents=True, exist_ok=True)
    export_viscoin(model_file, out / MODEL_FILE, embed=True)
    run = checkpoint_run(model_file)
    metrics = config_text = None
    if run is not None:
        for name in SIDE_FILES:
            if (run / name).is_file():
                shutil.copyfile(run / name, out / name)
        if (run / "metrics.json").is_file():
            metrics = json.loads((run / "metrics.json").read_text())
        config_text = (run / "config.yaml").read_text()
    _, config, extra = load_checkpoint(out / MODEL_FILE)
    card = model_card(config, extra, metrics, config_text, repo_id or str(out))
    atomic_write_text(out / CARD_FILE, card)
    return out


def model_card(
    config: dict[str, Any],
    extra: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    config_text: str | None = None,
    repo_id: str = "ORG/NAME",
) -> str:
    """The model card (Markdown with the Hub's YAML header) of a VisCoIN file's ``config`` and
    ``extra``, with the headline ``metrics`` each beside its null and the run's ``config_text``."""
    from viscoin.report.headline import format_number, metrics_rows

    classifier = config["classifier"].get("config", {})
    generator = config["generator"].get("config", {})
    core = config["core"]
    classes = extra.get("classes") or config["classifier"].get("extra", {}).get("classes") or []
    dataset = (metrics or {}).get("dataset", "")
    lines = [
        "---",
        "library_name: viscoin",
        "license: mit",
        "tags: [interpretability, concept-based-explanations, stylegan2, viscoin]",
        "---",
        "",
        f"# VisCoIN ensemble{f' on {dataset}' if dataset else ''}",
        "",
        "A concept-based interpretable network (VisCoIN): a classifier f, a dictionary of "
        f"{core['head'].get('n_concepts', '?')} concepts Ψ read from f's feature maps, an "
        "interpretable head g over them, and a StyleGAN2 generator that shows each concept by "
        "regenerating an image with it removed or amplified. One file, `viscoin.safetensors`, "
        "rebuilds all of it without running code.",
        "",
        f"* classifier f: `{classifier.get('arch', '?')}`, {classifier.get('num_classes', '?')} "
        f"classes{': ' + ', '.join(map(str, classes[:12])) if classes else ''}"
        f"{' ...' if len(classes) > 12 else ''}",
        f"* generator: StyleGAN2 at {generator.get('img_resolution', '?')} px",
        f"* trained for {extra.get('step', '?')} iterations",
        "",
        "## Use",
        "",
        "```python",
        "import viscoin",
        f'model = viscoin.from_pretrained("{repo_id}")  # pip install "viscoin[hub]"',
        'out = model.explain(["image.jpg"], top_k=3)',
        "print(out.g_names, out.top_concepts)",
        "```",
        "",
    ]
    rows = metrics_rows(metrics) if metrics else []
    if rows:
        lines += [
            "## Metrics, each beside its null",
            "",
            "The null is what a model that explains nothing would score (see the viscoin "
            "documentation, *The metrics and their nulls*).",
            "",
            "| metric | value | null | the null is | note |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in rows:
            cells = (row.metric, format_number(row.value), format_number(row.null), row.null_is)
            lines.append("| " + " | ".join(cells) + f" | {row.note} |")
        lines.append("")
    else:
        lines += ["## Metrics", "", "Not evaluated (`viscoin evaluate RUN` writes them).", ""]
    if config_text:
        lines += ["## Settings", "", "```yaml", config_text.rstrip(), "```", ""]
    lines += [
        "## Citation",
        "",
        "Parekh, Bouniot, Mozharovskyi, Newson and d'Alché-Buc, *Restyling Unsupervised Concept "
        "Based Interpretable Networks with Generative Models*, ICLR 2025 (arXiv 2407.01331).",
        "",
    ]
    return "\n".join(lines)


def from_pretrained(
    name_or_dir: str | os.PathLike,
    device: str | torch.device = "auto",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Viscoin:
    """Load a folder written by :func:`save_pretrained`, or download ``org/name`` from the Hub
    (cached; ``HF_HUB_OFFLINE=1`` uses the cache only) → the ensemble (eval mode, frozen)."""
    from viscoin import load

    path = Path(name_or_dir)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise UserError(
                f"{path} has no {MODEL_FILE}: give a folder written by save_pretrained, or a run "
                "directory to viscoin.load."
            )
        return load(path / MODEL_FILE, device)
    name = str(name_or_dir)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/")):
        raise UserError(
            f"{name} is neither a folder written by save_pretrained nor a Hub name 'org/name'."
        )
    hub = _huggingface_hub()
    try:
        folder = hub.snapshot_download(
            repo_id=name,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            allow_patterns=[MODEL_FILE, CARD_FILE, *SIDE_FILES],
        )
    except Exception as exc:  # offline without a cached copy, unknown repository, no network
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = (
            "HF_HUB_OFFLINE is set and no copy is cached: unset it once, or give a local folder"
            if offline
            else "check the name and the network, or give a local folder"
        )
        raise UserError(
            f"cannot fetch {name} from the Hub ({type(exc).__name__}): {hint}."
        ) from None
    return from_pretrained(folder, device)


def push_to_hub(
    source: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    api: Any = None,
) -> str:
    """Upload the :func:`save_pretrained` folder of ``source`` (a run or a model file) to the Hub
    repository ``repo_id`` (created when missing) → its URL. ``api``: an ``HfApi``-like object
    (default: ``huggingface_hub.HfApi(token=token)``)."""
    if api is None:
        api = _huggingface_hub().HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="viscoin-hub-") as tmp:
        folder = save_pretrained(source, Path(tmp) / "model", repo_id)
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id)
    return str(url)


def _huggingface_hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise UserError(
            "the Hub needs the 'huggingface_hub' package: pip install 'viscoin[hub]' (a local "
            "folder written by save_pretrained loads without it)."
        ) from None
    return huggingface_hub
