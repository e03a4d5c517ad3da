"""The report tests reuse the tiny ensembles and datasets of the interpretation tests."""

from tests.interpret.conftest import _one_thread, loader, tiny_dataset, tiny_model  # noqa: F401
