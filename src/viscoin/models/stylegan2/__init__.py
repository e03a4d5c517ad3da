"""Pure-PyTorch StyleGAN2 (the architecture of NVIDIA's StyleGAN2-ADA release, same parameter names).

Read top-down: ``generator.py`` (mapping + synthesis), ``synthesis.py``, ``mapping.py``,
``discriminator.py``, ``layers.py``, ``ops.py``. ``pickle_import.py`` converts official network
pickles without executing the code they embed.
"""

from viscoin.models.stylegan2.discriminator import (
    DISCRIMINATOR_KIND,
    Discriminator,
    load_discriminator,
    save_discriminator,
)
from viscoin.models.stylegan2.generator import (
    GENERATOR_KIND,
    Generator,
    load_generator,
    sample,
    save_generator,
    to_uint8,
)
from viscoin.models.stylegan2.mapping import MappingNetwork
from viscoin.models.stylegan2.synthesis import SynthesisNetwork

__all__ = [
    "DISCRIMINATOR_KIND",
    "GENERATOR_KIND",
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "load_discriminator",
    "load_generator",
    "sample",
    "save_discriminator",
    "save_generator",
    "to_uint8",
]
