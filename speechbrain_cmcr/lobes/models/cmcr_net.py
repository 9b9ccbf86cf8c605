"""CMCR-Net: collaboration module and contrastive regularization for speech
enhancement.

Reference
---------
Xu, Tu, Han, Yang, "All Information is Necessary: Integrating Speech Positive
and Negative Information by Contrastive Learning for Speech Enhancement",
arXiv 2304.13439 (2023), https://arxiv.org/abs/2304.13439

The model is a short composition::

    noisy wav [B, L] --STFT--> [B, 2, F, T]
      --Encoder (5 conv blocks along F)--> bottleneck [B, C, F', T]
      --CollaborationModule x N--> speech view, noise view [B, C, F', T]
      --Decoder (speech), Decoder (noise), gated skips--> [B, 2, F, T] each
      --complex output (ratio mask or mapping)--iSTFT--> wavs [B, L]

The contrastive regularization that trains it lives in
``speechbrain_cmcr.nnet.losses``; the model itself never needs the teacher.

Choices the paper's public traces leave open, and what we chose
---------------------------------------------------------------
The paper body is not available; the facts come from its abstract and the
authors' earlier CRC-Net code. Where those are silent or self-contradictory,
the choice is ours and is a constructor argument (so a yaml sets it):

1. Time padding of the (3, 2) convolutions. The authors' blocks pad one frame
   on both sides and drop the last, which makes them causal although named
   non-causal. Default ``causal=False``: each block looks one frame ahead
   (5 frames, 80 ms, in total); ``causal=True`` looks only back.
2. Output. Default ``output="mask"``: an unbounded complex ratio mask
   multiplied with the noisy spectrum. Its output layer is initialised near
   a pass-through (speech mask 1, noise mask 0), so training starts from the
   noisy input rather than from noise; it follows
   the input level (VoiceBank levels vary by 30 dB), and gives exact zeros in
   silent padding. ``output="mapping"`` predicts the spectrum directly.
3. Attention axis of the contrastive attention. The authors' code embeds the
   C x F' bottleneck of every frame into ``attention_dim`` features and lets
   those features attend to each other, with similarities taken over the
   whole time axis (``attention_axis="frequency"``, the default; we average
   the similarities over the valid frames so they do not grow with length).
   ``attention_axis="time"`` lets frames attend to frames instead.
4. The gate ``z = sigmoid(g(q, k))``: g is two 1x1 convolutions on ``q`` and
   ``k``, summed, then conv-BN-ReLU-conv-BN as in the authors' ``Local``
   block. The irrelevant query is ``(1 - z) * q`` as DESIGN.md states (the
   authors' code multiplies by ``z`` twice, which we take for a slip).
5. Interactive attention. The authors apply one MLP twice, which yields two
   identical attention vectors and a constant 0.5/0.5 softmax. We use a
   shared MLP trunk with one output head per stream (selective-kernel
   fusion), so the softmax across the two streams can prefer either.
6. Projection back. R' and I' are each concatenated with X and projected by
   one shared 1x1 conv (BN, ELU), as the authors share their block; the two
   projections are summed.
7. What feeds the decoders. Each module but the last returns
   ``LN(X + P_r + P_i)`` for the next module. The last one returns
   ``LN(X + P_r)`` (speech view) and ``LN(X + P_i)`` (noise view) with the
   same norm; the speech decoder starts from the first, the noise decoder
   from the second.
8. Residual and norm. LayerNorm over the channels and bins of each frame
   (length independent, unlike the authors' LayerNorm over a fixed 251-frame
   window).
9. Padding. Every block output is multiplied by the frame mask, so an
   utterance in a padded batch gives the same output as alone (eval mode).

Cost of the default configuration (``benchmarks/model_cost.py``):
3.65 M parameters; per second of 16 kHz audio, 0.97 G multiply-accumulates
for ``enhance`` (speech decoder only) and 1.45 G for the training forward
(both decoders). Outside training, BatchNorm is folded into the preceding
convolution.

Authors
-------
speechbrain-cmcr contributors
"""

from typing import List, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from speechbrain.processing.features import ISTFT, STFT
from torch import nn

WINDOWS = {"hamming": torch.hamming_window, "hann": torch.hann_window}


class CMCROutput(NamedTuple):
    """What :class:`CMCRNet` returns.

    ``enhanced_spec`` and ``noise_spec`` are ``[B, T, F, 2]`` (SpeechBrain's
    STFT layout), wavs are ``[B, L]`` and ``streams`` holds the relevant and
    irrelevant streams ``[B, C, F', T]`` of every collaboration module.
    """

    enhanced_wav: torch.Tensor
    noise_wav: torch.Tensor
    enhanced_spec: torch.Tensor
    noise_spec: torch.Tensor
    noisy_spec: torch.Tensor
    streams: List[Tuple[torch.Tensor, torch.Tensor]]


def frame_mask(lengths, num_frames, num_samples, hop_samples):
    """Returns a ``[B, T]`` float mask of the STFT frames inside each signal.

    Arguments
    ---------
    lengths : torch.Tensor
        Relative lengths in [0, 1], shape ``[B]``.
    num_frames : int
        Number of STFT frames of the padded batch.
    num_samples : int
        Number of samples of the padded batch.
    hop_samples : int
        Hop between frames, in samples.

    Returns
    -------
    torch.Tensor
        1.0 on frames of the signal, 0.0 on padding.

    Example
    -------
    >>> frame_mask(torch.tensor([1.0, 0.5]), 5, 1024, 256)
    tensor([[1., 1., 1., 1., 1.],
            [1., 1., 1., 0., 0.]])
    """
    samples = torch.round(lengths * num_samples)
    valid = torch.ceil(samples / hop_samples) + 1
    frames = torch.arange(num_frames, device=lengths.device)
    return (frames[None, :] < valid[:, None]).float()


def folded_conv_norm(conv, norm):
    """Weight and bias of ``norm(conv(.))`` for a convolution followed by an
    inference-mode BatchNorm: the norm's affine map folded into the
    convolution, which saves a pass over the output.

    Arguments
    ---------
    conv : torch.nn.modules.conv._ConvNd
        Convolution (plain or transposed) with a bias.
    norm : torch.nn.modules.batchnorm._BatchNorm
        BatchNorm over the convolution's output channels.

    Returns
    -------
    weight, bias : torch.Tensor
        Drop-in replacements for ``conv.weight`` and ``conv.bias``.

    Example
    -------
    >>> conv, norm = nn.Conv1d(3, 4, 1), nn.BatchNorm1d(4).eval()
    >>> norm.running_mean.fill_(0.5); norm.running_var.fill_(2.0)
    tensor([0.5000, 0.5000, 0.5000, 0.5000])
    tensor([2., 2., 2., 2.])
    >>> weight, bias = folded_conv_norm(conv, norm)
    >>> x = torch.randn(2, 3, 5)
    >>> torch.allclose(F.conv1d(x, weight, bias), norm(conv(x)), atol=1e-6)
    True
    """
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)  # [C_out]
    out_dim = 1 if conv.transposed else 0
    shape = [1] * conv.weight.dim()
    shape[out_dim] = -1
    weight = conv.weight * scale.view(shape)
    bias = (conv.bias - norm.running_mean) * scale + norm.bias
    return weight, bias


def conv_norm(x, conv, norm, crop=slice(None)):
    """``norm(conv(x)[..., crop])``: a convolution, a crop of its time axis,
    and BatchNorm, folded into the convolution outside training.

    Arguments
    ---------
    x : torch.Tensor
        Input of ``conv``.
    conv : torch.nn.modules.conv._ConvNd
        Convolution (plain or transposed) with a bias.
    norm : torch.nn.modules.batchnorm._BatchNorm
        BatchNorm over the convolution's output channels.
    crop : slice
        Frames of the convolution's output to keep.

    Returns
    -------
    torch.Tensor
        The normalised output.

    Example
    -------
    >>> conv, norm = nn.Conv2d(2, 4, (3, 2), padding=(0, 1)), nn.BatchNorm2d(4)
    >>> conv_norm(torch.randn(1, 2, 9, 5), conv, norm, slice(1, None)).shape
    torch.Size([1, 4, 7, 5])
    """
    if norm.training:
        return norm(conv(x)[..., crop])
    weight, bias = folded_conv_norm(conv, norm)
    if conv.transposed:
        out = F.conv_transpose2d(
            x, weight, bias, conv.stride, conv.padding, conv.output_padding
        )
    else:
        out = conv._conv_forward(x, weight, bias)
    return out[..., crop]


class EncoderBlock(nn.Module):
    """Conv2d with kernel (3, 2) and stride (2, 1), BatchNorm, ELU.

    Arguments
    ---------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    causal : bool
        Pad the time axis in the past (True) or one frame ahead (False).

    Example
    -------
    >>> block = EncoderBlock(2, 16)
    >>> block(torch.randn(1, 2, 257, 10)).shape
    torch.Size([1, 16, 128, 10])
    """

    def __init__(self, in_channels, out_channels, causal=False):
        super().__init__()
        # One zero frame on both sides gives T + 1 outputs; output t looks
        # at frames t-1, t (causal, the first T) or t, t+1 (the last T).
        self.crop = slice(None, -1) if causal else slice(1, None)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=(3, 2),
            stride=(2, 1),
            padding=(0, 1),
        )
        self.norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.ELU()

    def forward(self, x):
        """Encodes ``x`` [B, C_in, F, T] into [B, C_out, (F - 1) // 2, T]."""
        return self.activation(conv_norm(x, self.conv, self.norm, self.crop))


class GatedSkip(nn.Module):
    """Gates an encoder skip with the decoder state.

    ``skip' = skip * sigmoid(BN(conv(skip)) + BN(conv(decoder)))``

    Arguments
    ---------
    channels : int
        Channels of both the skip and the decoder state.

    Example
    -------
    >>> gate = GatedSkip(16)
    >>> gate(torch.randn(1, 16, 7, 4), torch.randn(1, 16, 7, 4)).shape
    torch.Size([1, 16, 7, 4])
    """

    def __init__(self, channels):
        super().__init__()
        self.skip_proj = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels)
        )
        self.decoder_proj = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels)
        )

    def forward(self, skip, decoder):
        """Returns the gated skip, same shape as ``skip`` [B, C, F, T]."""
        gate = conv_norm(skip, *self.skip_proj) + conv_norm(
            decoder, *self.decoder_proj
        )
        return skip * torch.sigmoid(gate)


class DecoderBlock(nn.Module):
    """ConvTranspose2d with kernel (3, 2) and stride (2, 1) mirroring
    :class:`EncoderBlock`, then BatchNorm and ELU (none for the last block).

    Arguments
    ---------
    in_channels : int
        Input channels (decoder state and gated skip, concatenated).
    out_channels : int
        Output channels.
    output_padding : int
        Extra bin so that the output has the encoder's frequency size.
    causal : bool
        Must match the encoder.
    last : bool
        The output block: a plain linear transposed convolution.

    Example
    -------
    >>> block = DecoderBlock(32, 16, output_padding=1)
    >>> block(torch.randn(1, 32, 63, 10)).shape
    torch.Size([1, 16, 128, 10])
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        output_padding=0,
        causal=False,
        last=False,
    ):
        super().__init__()
        # The transposed convolution gives T + 1 frames: keep the first T
        # (causal) or the last T, mirroring the encoder.
        self.crop = slice(None, -1) if causal else slice(1, None)
        self.conv = nn.ConvTranspose2d(
            in_channels,
            out_channels,
            kernel_size=(3, 2),
            stride=(2, 1),
            output_padding=(output_padding, 0),
        )
        if last:
            self.post = nn.Identity()
        else:
            self.post = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ELU())

    def forward(self, x):
        """Decodes ``x`` [B, C_in, F, T] into [B, C_out, 2F + 1 (+1), T]."""
        if isinstance(self.post, nn.Identity):
            return self.conv(x)[..., self.crop]
        norm, activation = self.post
        return activation(conv_norm(x, self.conv, norm, self.crop))


class Encoder(nn.Module):
    """A stack of :class:`EncoderBlock`, keeping every output for the skips.

    Arguments
    ---------
    channels : Sequence[int]
        Output channels of each block; the input has 2 (real, imaginary).
    causal : bool
        Causal time padding.

    Example
    -------
    >>> encoder = Encoder([4, 8])
    >>> [o.shape for o in encoder(torch.randn(1, 2, 33, 5), torch.ones(1, 5))]
    [torch.Size([1, 4, 16, 5]), torch.Size([1, 8, 7, 5])]
    """

    def __init__(self, channels, causal=False):
        super().__init__()
        sizes = [2] + list(channels)
        self.blocks = nn.ModuleList(
            EncoderBlock(c_in, c_out, causal)
            for c_in, c_out in zip(sizes[:-1], sizes[1:])
        )

    def forward(self, x, mask):
        """Returns the output of every block for ``x`` [B, 2, F, T] and the
        frame ``mask`` [B, T]."""
        outputs = []
        for block in self.blocks:
            x = block(x) * mask[:, None, None, :]
            outputs.append(x)
        return outputs


class Decoder(nn.Module):
    """Mirrors :class:`Encoder` with gated skips and ends in 2 channels.

    Arguments
    ---------
    channels : Sequence[int]
        The encoder's channels.
    freq_sizes : Sequence[int]
        Frequency size at the encoder input and after each of its blocks.
    causal : bool
        Must match the encoder.

    Example
    -------
    >>> encoder = Encoder([4, 8])
    >>> decoder = Decoder([4, 8], [33, 16, 7])
    >>> mask = torch.ones(1, 5)
    >>> skips = encoder(torch.randn(1, 2, 33, 5), mask)
    >>> decoder(skips[-1], list(skips), mask).shape
    torch.Size([1, 2, 33, 5])
    """

    def __init__(self, channels, freq_sizes, causal=False):
        super().__init__()
        sizes = [2] + list(channels)
        depth = len(channels)
        self.gates = nn.ModuleList(GatedSkip(c) for c in reversed(channels))
        self.blocks = nn.ModuleList()
        for level in reversed(range(depth)):
            f_in, f_out = freq_sizes[level + 1], freq_sizes[level]
            self.blocks.append(
                DecoderBlock(
                    2 * sizes[level + 1],
                    sizes[level],
                    output_padding=f_out - (2 * f_in + 1),
                    causal=causal,
                    last=level == 0,
                )
            )

    def forward(self, x, skips, mask):
        """Decodes the bottleneck view ``x`` [B, C, F', T] with the encoder
        outputs ``skips`` into [B, 2, F, T]. It empties the list ``skips``,
        deepest first, so that each skip can be freed once used."""
        time_mask = mask[:, None, None, :]
        for gate, block in zip(self.gates, self.blocks):
            skip = skips.pop()
            x = torch.cat([x, gate(skip, x)], dim=1)  # [B, 2C, F', T]
            x = block(x) * time_mask
        return x


class ContrastiveAttention(nn.Module):
    """Splits the bottleneck into a speech-relevant stream R and a
    speech-irrelevant stream I.

    Queries, keys and values are 1x1 projections of each frame's C x F'
    features to ``attention_dim``. A learned gate ``z = sigmoid(g(q, k))``
    splits the query into ``z * q`` and ``(1 - z) * q``; each attends over the
    same keys and values, and one shared projection maps both back.

    Arguments
    ---------
    channels : int
        Bottleneck channels C.
    freq_bins : int
        Bottleneck frequency size F'.
    attention_dim : int
        Size of the query, key and value embeddings.
    attention_axis : str
        "frequency": the embedded features attend to each other, similarity
        averaged over the valid frames (authors' code). "time": frames attend
        to frames (scaled dot product).

    Example
    -------
    >>> attention = ContrastiveAttention(8, 7, 16)
    >>> x, mask = torch.randn(2, 8, 7, 5), torch.ones(2, 5)
    >>> relevant, irrelevant = attention(x, mask)
    >>> relevant.shape == irrelevant.shape == x.shape
    True
    """

    def __init__(
        self, channels, freq_bins, attention_dim, attention_axis="frequency"
    ):
        super().__init__()
        if attention_axis not in ("frequency", "time"):
            raise ValueError(
                "attention_axis must be 'frequency' or 'time', "
                f"got {attention_axis!r}"
            )
        self.attention_axis = attention_axis
        features = channels * freq_bins

        def embed():
            return nn.Sequential(
                nn.Conv1d(features, attention_dim, 1),
                nn.BatchNorm1d(attention_dim),
            )

        self.query, self.key, self.value = embed(), embed(), embed()
        self.gate_query = nn.Conv1d(attention_dim, attention_dim, 1)
        self.gate_key = nn.Conv1d(attention_dim, attention_dim, 1)
        self.gate = nn.Sequential(
            nn.BatchNorm1d(attention_dim),
            nn.ReLU(),
            nn.Conv1d(attention_dim, attention_dim, 1),
            nn.BatchNorm1d(attention_dim),
        )
        self.out = nn.Sequential(
            nn.Conv1d(attention_dim, features, 1), nn.BatchNorm1d(features)
        )

    def forward(self, x, mask):
        """Returns R and I, both shaped like ``x`` [B, C, F', T]."""
        batch, channels, bins, frames = x.shape
        flat = x.reshape(batch, channels * bins, frames)  # [B, C*F', T]
        seq_mask = mask[:, None, :]  # [B, 1, T]
        q = conv_norm(flat, *self.query) * seq_mask  # [B, D, T]
        k = conv_norm(flat, *self.key) * seq_mask
        v = conv_norm(flat, *self.value) * seq_mask
        z = torch.sigmoid(self.gate(self.gate_query(q) + self.gate_key(k)))
        streams = []
        for query in (z * q, (1 - z) * q):
            attended = self._attend(query, k, v, mask)  # [B, D, T]
            out = conv_norm(attended, *self.out) * seq_mask  # [B, C*F', T]
            streams.append(out.reshape(batch, channels, bins, frames))
        return streams[0], streams[1]

    def _attend(self, query, key, value, mask):
        """Attention of ``query`` over ``key``/``value`` [B, D, T]."""
        if self.attention_axis == "frequency":
            valid = mask.sum(dim=1).clamp(min=1)[:, None, None]  # [B, 1, 1]
            scores = query @ key.transpose(1, 2) / valid  # [B, D, D]
            return torch.softmax(scores, dim=-1) @ value  # [B, D, T]
        keep = mask[:, None, :].bool()  # [B, 1, T] keys to attend to
        out = F.scaled_dot_product_attention(
            query.transpose(1, 2),  # [B, T, D]
            key.transpose(1, 2),
            value.transpose(1, 2),
            attn_mask=keep,
        )
        return out.transpose(1, 2)  # [B, D, T]


class InteractiveAttention(nn.Module):
    """Selective-kernel fusion of the two streams.

    A global descriptor of R + I (average over valid frames and bins) goes
    through a shared MLP trunk and one head per stream; a softmax across the
    two streams gives per-channel weights that rescale R and I.

    Arguments
    ---------
    channels : int
        Stream channels C.
    reduction : int
        Hidden size of the MLP is ``channels // reduction``.

    Example
    -------
    >>> fusion = InteractiveAttention(8, reduction=2)
    >>> r, i = fusion(torch.randn(2, 8, 7, 5), torch.randn(2, 8, 7, 5),
    ...               torch.ones(2, 5))
    >>> r.shape
    torch.Size([2, 8, 7, 5])
    """

    def __init__(self, channels, reduction=4):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.trunk = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU())
        self.relevant_head = nn.Linear(hidden, channels)
        self.irrelevant_head = nn.Linear(hidden, channels)

    def forward(self, relevant, irrelevant, mask):
        """Returns the reweighted R' and I' [B, C, F', T]."""
        weight_r, weight_i = self.weights(relevant, irrelevant, mask)
        return relevant * weight_r, irrelevant * weight_i

    def weights(self, relevant, irrelevant, mask):
        """Returns the weights [B, C, 1, 1] of R and of I."""
        bins = relevant.shape[2]
        count = (mask.sum(dim=1) * bins).clamp(min=1)[:, None]  # [B, 1]
        summary = (relevant + irrelevant).sum(dim=(2, 3)) / count  # [B, C]
        hidden = self.trunk(summary)
        logits = torch.stack(
            [self.relevant_head(hidden), self.irrelevant_head(hidden)]
        )  # [2, B, C]
        weights = torch.softmax(logits, dim=0)[..., None, None]
        return weights[0], weights[1]


class CollaborationModule(nn.Module):
    """Contrastive attention, then interactive attention, then a residual
    connection and a LayerNorm.

    Arguments
    ---------
    channels : int
        Bottleneck channels C.
    freq_bins : int
        Bottleneck frequency size F'.
    attention_dim : int
        Query/key/value size of the contrastive attention.
    attention_axis : str
        See :class:`ContrastiveAttention`.
    fusion_reduction : int
        See :class:`InteractiveAttention`.

    Example
    -------
    >>> module = CollaborationModule(8, 7, 16)
    >>> x, mask = torch.randn(2, 8, 7, 5), torch.ones(2, 5)
    >>> out = module(x, mask)
    >>> out.fused.shape, out.speech_view
    (torch.Size([2, 8, 7, 5]), None)
    >>> last = module(x, mask, views=("speech", "noise", "streams"))
    >>> last.speech_view.shape == last.noise_view.shape == last.relevant.shape
    True
    """

    class Output(NamedTuple):
        """Outputs of one module, each [B, C, F', T]."""

        fused: torch.Tensor
        speech_view: torch.Tensor
        noise_view: torch.Tensor
        relevant: torch.Tensor
        irrelevant: torch.Tensor

    def __init__(
        self,
        channels,
        freq_bins,
        attention_dim,
        attention_axis="frequency",
        fusion_reduction=4,
    ):
        super().__init__()
        self.contrastive = ContrastiveAttention(
            channels, freq_bins, attention_dim, attention_axis
        )
        self.interactive = InteractiveAttention(channels, fusion_reduction)
        self.project = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ELU(),
        )
        self.norm = nn.LayerNorm([channels, freq_bins])

    def forward(self, x, mask, views=("fused", "streams")):
        """Processes ``x`` [B, C, F', T] with the frame ``mask`` [B, T].

        ``views`` names the outputs to compute among "fused" (the next
        module's input), "speech" and "noise" (the last module's outputs for
        the decoders) and "streams" (R and I, for the stream-contrast loss);
        the others are None.
        """
        relevant, irrelevant = self.contrastive(x, mask)
        proj_r, proj_i = self._project(
            x, mask, relevant, irrelevant, "fused" in views or "noise" in views
        )
        if "streams" not in views:
            relevant = irrelevant = None  # freed before the norms
        return self.Output(
            fused=self._view(x, mask, proj_r, proj_i, want="fused" in views),
            speech_view=self._view(x, mask, proj_r, want="speech" in views),
            noise_view=self._view(x, mask, proj_i, want="noise" in views),
            relevant=relevant,
            irrelevant=irrelevant,
        )

    def _project(self, x, mask, relevant, irrelevant, project_irrelevant):
        """Reweights the streams (interactive attention), then projects each
        ``s`` as ``ELU(BN(conv([s, x])))``; the irrelevant one only if
        ``project_irrelevant`` (else None). The conv is linear, so its X half
        is computed once for both. The reweighted streams live only here,
        which bounds memory on long inputs."""
        weights = self.interactive.weights(relevant, irrelevant, mask)
        conv, norm, activation = self.project
        weight, bias = conv.weight, conv.bias
        if not norm.training:
            weight, bias = folded_conv_norm(conv, norm)
            norm = nn.Identity()
        channels = x.shape[1]
        shared = F.conv2d(x, weight[:, channels:], bias)  # [B, C, F', T]
        projections = []
        for stream, stream_weight, wanted in zip(
            (relevant, irrelevant), weights, (True, project_irrelevant)
        ):
            if wanted:
                own = F.conv2d(stream * stream_weight, weight[:, :channels])
                projections.append(activation(norm(own + shared)))
            else:
                projections.append(None)
        return projections

    def _view(self, x, mask, *projections, want=True):
        """``LN(x + sum(projections))`` if wanted, else None."""
        if not want:
            return None
        return self._residual_norm(x + sum(projections), mask)

    def _residual_norm(self, x, mask):
        """LayerNorm over [C, F'] of each frame, zero on padding."""
        x = self.norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x * mask[:, None, None, :]


class CMCRNet(nn.Module):
    """CMCR-Net speech enhancement, waveform in, waveform out.

    Arguments
    ---------
    sample_rate : int
        Sample rate of the input and output, in Hz.
    n_fft : int
        FFT size (the authors use 512 at 16 kHz).
    win_length : float
        STFT window length in ms (SpeechBrain's convention): 32 ms = 512.
    hop_length : float
        STFT hop in ms: 16 ms = 256 samples at 16 kHz.
    window : str
        "hamming" (authors) or "hann".
    encoder_channels : Sequence[int]
        Output channels of the encoder blocks (2 -> 16 ... 256).
    num_modules : int
        Number N of stacked collaboration modules (0: none, an ablation).
    attention_dim : int
        Query/key/value size of the contrastive attention.
    attention_axis : str
        "frequency" (authors) or "time"; see :class:`ContrastiveAttention`.
    fusion_reduction : int
        MLP reduction of the interactive attention.
    output : str
        "mask" (complex ratio mask, default) or "mapping".
    causal : bool
        Causal convolutions (no look-ahead). The attention of the
        collaboration modules stays global over the input, so the model as a
        whole is an offline one either way.

    Example
    -------
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8)
    >>> noisy = torch.randn(2, 1000)
    >>> out = model(noisy, torch.tensor([1.0, 0.7]))
    >>> out.enhanced_wav.shape, out.noise_wav.shape
    (torch.Size([2, 1000]), torch.Size([2, 1000]))
    >>> model.enhance(noisy).shape
    torch.Size([2, 1000])
    """

    def __init__(
        self,
        sample_rate=16000,
        n_fft=512,
        win_length=32,
        hop_length=16,
        window="hamming",
        encoder_channels=(16, 32, 64, 128, 256),
        num_modules=3,
        attention_dim=64,
        attention_axis="frequency",
        fusion_reduction=4,
        output="mask",
        causal=False,
    ):
        super().__init__()
        if output not in ("mask", "mapping"):
            raise ValueError(f"output must be 'mask' or 'mapping': {output!r}")
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {sorted(WINDOWS)}")
        self.config = dict(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            window=window,
            encoder_channels=list(encoder_channels),
            num_modules=num_modules,
            attention_dim=attention_dim,
            attention_axis=attention_axis,
            fusion_reduction=fusion_reduction,
            output=output,
            causal=causal,
        )
        self.sample_rate = sample_rate
        self.output = output
        self.hop_samples = int(round(sample_rate * hop_length / 1000))
        stft_args = dict(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            window_fn=WINDOWS[window],
        )
        self.stft = STFT(**stft_args)
        self.istft = ISTFT(**stft_args)

        freq_sizes = [n_fft // 2 + 1]
        for _ in encoder_channels:
            freq_sizes.append((freq_sizes[-1] - 3) // 2 + 1)
        if freq_sizes[-1] < 1:
            raise ValueError(
                f"n_fft={n_fft} is too small for {len(encoder_channels)} "
                "encoder blocks"
            )
        channels, bins = encoder_channels[-1], freq_sizes[-1]
        self.encoder = Encoder(encoder_channels, causal)
        self.collaboration = nn.ModuleList(
            CollaborationModule(
                channels, bins, attention_dim, attention_axis, fusion_reduction
            )
            for _ in range(num_modules)
        )
        self.speech_decoder = Decoder(encoder_channels, freq_sizes, causal)
        self.noise_decoder = Decoder(encoder_channels, freq_sizes, causal)
        if output == "mask":
            # Start near speech = noisy, noise = 0 (see the module docstring).
            self._init_mask(self.speech_decoder, real=1.0)
            self._init_mask(self.noise_decoder, real=0.0)

    def train(self, mode=True):
        """Sets training mode. Convolution weights are kept channels-last
        outside training, where oneDNN then runs inference about 10 % faster
        on CPU, and contiguous in training, where the backward pass is about
        25 % faster so. The numbers are the same either way."""
        super().train(mode)
        layout = torch.contiguous_format if mode else torch.channels_last
        return self.to(memory_format=layout)

    @staticmethod
    def _init_mask(decoder, real, weight_scale=0.1):
        """Makes the initial mask close to ``real + 0j`` everywhere."""
        last = decoder.blocks[-1].conv
        with torch.no_grad():
            last.weight.mul_(weight_scale)
            last.bias.copy_(torch.tensor([real, 0.0]))

    def forward(self, noisy, lengths=None, with_noise=True, with_streams=True):
        """Enhances ``noisy`` [B, L] (relative ``lengths`` [B] in [0, 1]).

        Returns a :class:`CMCROutput`; with ``with_noise=False`` the noise
        decoder is skipped and its fields are None; with
        ``with_streams=False`` the streams are not kept (an empty list),
        which saves memory on long inputs.
        """
        if lengths is None:
            lengths = torch.ones(noisy.shape[0], device=noisy.device)
        num_samples = noisy.shape[1]
        noisy_spec = self.spectrum(noisy)  # [B, T, F, 2]
        mask = frame_mask(
            lengths, noisy_spec.shape[1], num_samples, self.hop_samples
        )  # [B, T]
        spec = noisy_spec.permute(0, 3, 2, 1) * mask[:, None, None, :]
        skips = self.encoder(spec, mask)
        speech_view, noise_view, streams = self._collaborate(
            skips[-1], mask, with_noise, with_streams
        )
        # Each decoder empties the list it gets (freeing skips once used);
        # the speech decoder gets a copy when the noise decoder follows.
        speech_skips = list(skips) if with_noise else skips
        enhanced_spec = self._to_spectrum(
            self.speech_decoder(speech_view, speech_skips, mask), spec
        )
        enhanced_wav = self._to_wav(enhanced_spec, num_samples, lengths)
        noise_spec = noise_wav = None
        if with_noise:
            noise_spec = self._to_spectrum(
                self.noise_decoder(noise_view, skips, mask), spec
            )
            noise_wav = self._to_wav(noise_spec, num_samples, lengths)
        return CMCROutput(
            enhanced_wav,
            noise_wav,
            enhanced_spec,
            noise_spec,
            noisy_spec,
            streams,
        )

    def _collaborate(self, bottleneck, mask, with_noise, with_streams):
        """Runs the collaboration modules on the ``bottleneck`` [B, C, F', T];
        returns the speech view, the noise view (None without noise) and the
        streams of every module (if kept). Without modules (an ablation) both
        views are the bottleneck."""
        x = speech_view = noise_view = bottleneck
        streams = []
        final_views = ("speech", "noise") if with_noise else ("speech",)
        kept = ("streams",) if with_streams else ()
        for index, module in enumerate(self.collaboration):
            final = index == len(self.collaboration) - 1
            out = module(x, mask, (final_views if final else ("fused",)) + kept)
            if with_streams:
                streams.append((out.relevant, out.irrelevant))
            x, speech_view, noise_view = (
                out.fused,
                out.speech_view,
                out.noise_view,
            )
        return speech_view, noise_view, streams

    def spectrum(self, wavs):
        """STFT [B, T, F, 2] of ``wavs`` [B, L] padded to whole hops, so that
        the last frames cover the end of the signal; use it for targets."""
        return self.stft(F.pad(wavs, (0, -wavs.shape[1] % self.hop_samples)))

    def enhance(self, noisy, lengths=None):
        """Returns only the enhanced waveform [B, L] (no noise decoder)."""
        out = self.forward(noisy, lengths, with_noise=False, with_streams=False)
        return out.enhanced_wav

    def _to_spectrum(self, decoded, noisy):
        """Decoder output [B, 2, F, T] to a spectrum [B, T, F, 2]."""
        if self.output == "mask":
            real = decoded[:, 0] * noisy[:, 0] - decoded[:, 1] * noisy[:, 1]
            imag = decoded[:, 0] * noisy[:, 1] + decoded[:, 1] * noisy[:, 0]
            decoded = torch.stack([real, imag], dim=1)  # [B, 2, F, T]
        return decoded.permute(0, 3, 2, 1)

    def _to_wav(self, spec, num_samples, lengths):
        """iSTFT to [B, L], zero beyond each signal's length."""
        padded = (spec.shape[1] - 1) * self.hop_samples
        wav = self.istft(spec, sig_length=padded)[:, :num_samples]
        samples = torch.arange(num_samples, device=wav.device)
        keep = samples[None, :] < torch.round(lengths * num_samples)[:, None]
        return wav * keep

    def get_extra_state(self):
        """Stores the constructor arguments in the state dict, so that a
        checkpoint says which configuration it belongs to."""
        return {"config": self.config}

    def set_extra_state(self, state):
        """Refuses a checkpoint made for another configuration."""
        saved = state.get("config", {})
        if saved != self.config:
            diff = {
                key: (saved.get(key), value)
                for key, value in self.config.items()
                if saved.get(key) != value
            }
            raise ValueError(
                "Checkpoint was saved for another CMCRNet configuration "
                f"(checkpoint value, this model's value): {diff}"
            )
