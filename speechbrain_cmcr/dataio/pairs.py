"""Manifests of folders of real noisy/clean pairs.

A pair folder holds ``noisy/`` and ``clean/`` with the same file names (the
layout of the development sets and of most enhancement demo pages). The
recipe can validate on such a folder (``valid_pairs``), so that the best
checkpoint is chosen on real recordings rather than on generated mixtures.

Authors
-------
speechbrain-cmcr contributors
"""

import json
import os

from speechbrain_cmcr.dataio.dynamic_mixing import (
    AUDIO_EXTENSIONS,
    probe_audio,
)

ROLES = ("noisy", "clean")


def _audio_names(folder):
    return sorted(
        name for name in os.listdir(folder) if name.endswith(AUDIO_EXTENSIONS)
    )


def pair_manifest(folder, sample_rate):
    """Checks a pair folder and describes its pairs.

    Arguments
    ---------
    folder : str
        Folder with ``noisy/`` and ``clean/`` subfolders of same-named,
        same-length mono files at ``sample_rate``.
    sample_rate : int
        Required sampling rate.

    Returns
    -------
    dict
        ``{utt_id: {"noisy_wav", "clean_wav", "length"}}``, length in
        seconds, the format of the recipe's JSON manifests.

    Raises
    ------
    FileNotFoundError
        If a subfolder is missing.
    ValueError
        If there is no pair, a file has no twin, or a file is unreadable,
        not mono, at another rate, or not as long as its twin.

    Example
    -------
    >>> import torch
    >>> from speechbrain.dataio.dataio import write_audio
    >>> tmp = getfixture("tmpdir")
    >>> for role in ROLES:
    ...     write_audio(str(tmp.ensure_dir(role) / "a.wav"),
    ...                 0.1 * torch.randn(8000), 16000)
    >>> pair_manifest(str(tmp), 16000)["a"]["length"]
    0.5
    """
    for role in ROLES:
        if not os.path.isdir(os.path.join(folder, role)):
            raise FileNotFoundError(
                f"Pair folder {folder} has no {role}/ subfolder"
            )
    noisy_names, clean_names = (
        _audio_names(os.path.join(folder, role)) for role in ROLES
    )
    unpaired = sorted(set(noisy_names) ^ set(clean_names))
    if unpaired:
        raise ValueError(
            f"{folder}: files without a twin in noisy/ or clean/: "
            + ", ".join(unpaired[:10])
        )
    if not noisy_names:
        raise ValueError(f"{folder}: no audio file in noisy/ and clean/")
    manifest = {}
    for name in noisy_names:
        paths = [os.path.abspath(os.path.join(folder, r, name)) for r in ROLES]
        frames = [probe_audio(path, sample_rate) for path in paths]
        problems = [f for f in frames if isinstance(f, str)]
        if problems:
            raise ValueError("; ".join(problems))
        if frames[0] != frames[1]:
            raise ValueError(
                f"{folder}: {name} has {frames[0]} noisy and {frames[1]} "
                "clean samples"
            )
        manifest[os.path.splitext(name)[0]] = {
            "noisy_wav": paths[0],
            "clean_wav": paths[1],
            "length": frames[0] / sample_rate,
        }
    return manifest


def write_pair_manifest(folder, json_path, sample_rate):
    """Writes the JSON manifest of a pair folder (see ``pair_manifest``).

    Arguments
    ---------
    folder : str
        The pair folder.
    json_path : str
        Where the manifest goes (its folder is created).
    sample_rate : int
        Required sampling rate.

    Example
    -------
    >>> import torch
    >>> from speechbrain.dataio.dataio import write_audio
    >>> tmp = getfixture("tmpdir")
    >>> for role in ROLES:
    ...     write_audio(str(tmp.ensure_dir(role) / "a.wav"),
    ...                 0.1 * torch.randn(800), 16000)
    >>> write_pair_manifest(str(tmp), str(tmp / "m" / "pairs.json"), 16000)
    >>> sorted(json.loads((tmp / "m" / "pairs.json").read()))
    ['a']
    """
    manifest = pair_manifest(folder, sample_rate)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
