"""Frozen teachers for the contrastive regularization.

A teacher maps waveforms ``[B, L]`` to a list of representations
``[B, T', D]``, one per layer. It is frozen: no parameter needs a gradient,
it stays in eval mode whatever ``train()`` asks (no dropout, no SpecAugment),
and it adds nothing to a state dict, so it never lands in a checkpoint: its
weights come from its source each time. Gradients still flow through its
input, which is how the regularization reaches the enhancement model.

Authors
-------
speechbrain-cmcr contributors
"""

from collections import OrderedDict

import torch
from torch import nn


class FrozenTeacher(nn.Module):
    """Base class: frozen, always in eval mode, never in a state dict.

    Subclasses build their network in ``__init__``, call ``self.freeze()``
    and implement ``forward(wavs, lengths=None)`` returning a list of
    ``[B, T', D]`` tensors.

    Example
    -------
    >>> class Scale(FrozenTeacher):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.linear = nn.Linear(1, 2)
    ...         self.freeze()
    ...     def forward(self, wavs, lengths=None):
    ...         return [self.linear(wavs.unsqueeze(-1))]
    >>> teacher = Scale().train()
    >>> teacher.training, teacher.state_dict()
    (False, OrderedDict())
    >>> holder = nn.ModuleDict({"teacher": teacher, "head": nn.Linear(2, 1)})
    >>> sorted(holder.state_dict())
    ['head.bias', 'head.weight']
    >>> holder.load_state_dict(holder.state_dict())
    <All keys matched successfully>
    """

    def freeze(self):
        """Stops gradients into the parameters and switches to eval mode."""
        for param in self.parameters():
            param.requires_grad_(False)
        self._state_prefix = ""
        self.register_load_state_dict_post_hook(self._forget_missing)
        return super().train(False)

    def train(self, mode=True):
        """Stays in eval mode: a teacher never trains."""
        return super().train(False)

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        """Adds nothing: teacher weights come from the teacher's source."""
        return OrderedDict() if destination is None else destination

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Reads nothing, and remembers where the teacher sits so that the
        missing teacher keys are not reported (see ``_forget_missing``)."""
        self._state_prefix = prefix

    def _forget_missing(self, module, incompatible_keys):
        """Load post-hook: a state dict never holds teacher weights."""
        missing = incompatible_keys.missing_keys
        missing[:] = [
            k for k in missing if not k.startswith(self._state_prefix)
        ]


def masked_standardize(wavs, lengths=None, eps=1e-7):
    """Zero mean, unit variance per signal over its valid samples, as the
    Hugging Face feature extractors do with ``do_normalize=True``.

    Arguments
    ---------
    wavs : torch.Tensor
        Waveforms [B, L].
    lengths : torch.Tensor
        Relative lengths [B]; None means all full.
    eps : float
        Added to the variance.

    Returns
    -------
    torch.Tensor
        Standardised waveforms [B, L], zero on padding.

    Example
    -------
    >>> out = masked_standardize(torch.tensor([[1.0, 3.0, 0.0, 0.0]]),
    ...                          torch.tensor([0.5]))
    >>> out.round(decimals=3)
    tensor([[-1.,  1.,  0.,  0.]])
    """
    if lengths is None:
        lengths = torch.ones(wavs.shape[0], device=wavs.device)
    num_samples = wavs.shape[1]
    samples = torch.arange(num_samples, device=wavs.device)
    valid = torch.round(lengths * num_samples).clamp(min=1)[:, None]  # [B, 1]
    mask = samples[None, :] < valid  # [B, L]
    masked = wavs * mask
    mean = masked.sum(dim=1, keepdim=True) / valid
    var = (((wavs - mean) * mask) ** 2).sum(dim=1, keepdim=True) / valid
    standardized = (wavs - mean) / torch.sqrt(var + eps)
    return torch.where(mask, standardized, torch.zeros_like(wavs))


class HuggingFaceSSLTeacher(FrozenTeacher):
    """Any self-supervised speech model that ``transformers`` loads
    (wav2vec2, HuBERT, WavLM, ...), from a Hub id or a local folder.

    Its representations are the hidden states: index 0 is the output of the
    feature projection, index i the output of transformer layer i.

    Arguments
    ---------
    source : str
        Hub id (e.g. ``facebook/wav2vec2-base-960h``) or local folder.
    savedir : str
        Cache folder for Hub downloads (None: the Hugging Face default).
    normalize : bool
        Standardise each input as the model's feature extractor would; None
        reads ``do_normalize`` from the source's feature extractor config.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> save_random_ssl_teacher(folder)
    >>> teacher = HuggingFaceSSLTeacher(folder)
    >>> layers = teacher(torch.randn(2, 16000))
    >>> len(layers), layers[0].shape
    (5, torch.Size([2, 49, 32]))
    """

    def __init__(self, source, savedir=None, normalize=None):
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModel

        self.model = AutoModel.from_pretrained(source, cache_dir=savedir)
        if normalize is None:
            extractor = AutoFeatureExtractor.from_pretrained(
                source, cache_dir=savedir
            )
            normalize = bool(getattr(extractor, "do_normalize", False))
        self.normalize = normalize
        # Models with layer-normalised conv features were trained with
        # attention masks; group-normalised ones (wav2vec2-base) without.
        config = self.model.config
        self.use_attention_mask = (
            getattr(config, "feat_extract_norm", "group") == "layer"
        )
        self.freeze()

    def forward(self, wavs, lengths=None):
        """Returns the hidden states of ``wavs`` [B, L], each [B, T', D]."""
        if self.normalize:
            wavs = masked_standardize(wavs, lengths)
        attention_mask = None
        if self.use_attention_mask and lengths is not None:
            samples = torch.arange(wavs.shape[1], device=wavs.device)
            valid = torch.round(lengths * wavs.shape[1])[:, None]
            attention_mask = (samples[None, :] < valid).long()
        out = self.model(
            wavs, attention_mask=attention_mask, output_hidden_states=True
        )
        return list(out.hidden_states)


def save_random_ssl_teacher(
    folder,
    hidden_size=32,
    num_hidden_layers=4,
    conv_channels=32,
    seed=0,
):
    """Saves a small, randomly initialised wav2vec2 model and its feature
    extractor to ``folder``, loadable offline by :class:`HuggingFaceSSLTeacher`.

    It keeps wav2vec2's 320-sample frame stride. It serves the demo recipe and
    the tests (no download), and the ablation "CR with a random teacher".

    Arguments
    ---------
    folder : str
        Where to save.
    hidden_size : int
        Transformer width.
    num_hidden_layers : int
        Transformer depth.
    conv_channels : int
        Channels of the 7 convolutional feature-encoder layers.
    seed : int
        Seed of the random initialisation.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> save_random_ssl_teacher(folder)
    >>> sorted(os.listdir(folder))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    config = Wav2Vec2Config(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(conv_channels,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Wav2Vec2Model(config)
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
