"""Installs the speechbrain_cmcr package (CMCR-Net for SpeechBrain).

The wheel carries the default model of ``cmcr-enhance``: the folder
``pretrained/<DEFAULT_MODEL>`` of the repository (the name is set once, in
``speechbrain_cmcr/cli.py``) becomes the package data
``speechbrain_cmcr/pretrained/<DEFAULT_MODEL>``, where
``speechbrain_cmcr.inference.enhancement.shipped_model`` finds it. The
repository keeps a single copy of the model files.
"""

import ast
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def constant(module, name):
    """The value of the literal assignment ``name = ...`` in ``module`` (a
    path relative to this file), read without importing the package."""
    tree = ast.parse((HERE / module).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name
            for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError(f"{module}: no {name} = ...")


DEFAULT_MODEL = constant("speechbrain_cmcr/cli.py", "DEFAULT_MODEL")
MODELS_PACKAGE = "speechbrain_cmcr.pretrained"

setup(
    name="speechbrain_cmcr",
    version=constant("speechbrain_cmcr/__init__.py", "__version__"),
    description=(
        "CMCR-Net speech enhancement (collaboration module + contrastive "
        "regularization) for SpeechBrain"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["speechbrain_cmcr", "speechbrain_cmcr.*"])
    + [MODELS_PACKAGE],
    package_dir={MODELS_PACKAGE: "pretrained"},
    package_data={MODELS_PACKAGE: [f"{DEFAULT_MODEL}/*"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchaudio>=2.1",
        "speechbrain>=1.0,<2",
        "transformers>=4.40",
        "huggingface_hub>=0.20",
        "hyperpyyaml>=1.2",
        "soundfile>=0.12",
        "pesq>=0.0.4",
        "pystoi>=0.3",
        "torch-pesq>=0.1.2",
        "typeguard<3",
        "tqdm>=4.60",
    ],
    entry_points={
        "console_scripts": ["cmcr-enhance=speechbrain_cmcr.cli:main"],
    },
    license="Apache-2.0",
)
