"""Installs the speechbrain_cmcr package (CMCR-Net for SpeechBrain)."""

from setuptools import find_packages, setup

setup(
    name="speechbrain_cmcr",
    version="0.1.0",
    description=(
        "CMCR-Net speech enhancement (collaboration module + contrastive "
        "regularization) for SpeechBrain"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["speechbrain_cmcr", "speechbrain_cmcr.*"]),
    python_requires=">=3.9",
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
        "tqdm>=4.60",
    ],
    entry_points={
        "console_scripts": ["cmcr-enhance=speechbrain_cmcr.cli:main"],
    },
    license="Apache-2.0",
)
