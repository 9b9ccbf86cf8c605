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
   non-causal. Default ``causal=False``: each block looks one frame ahead;
   ``causal=True`` looks only back (and makes the whole model causal, see
   below).
2. Output. Default ``output="mask"``: an unbounded complex ratio mask
   multiplied with the noisy spectrum. Its output layer is initialised near
   a pass-through (speech mask 1, noise mask 0), so training starts from the
   noisy input rather than from noise; it follows
   the input level (VoiceBank levels vary by 30 dB), and gives exact zeros in
   silent padding. ``output="mapping"`` predicts the spectrum directly.
   ``mask_bound`` (off by default) caps the mask's magnitude, so that the
   output never boosts a bin by more than that factor.
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

The causal model
----------------
``causal=False`` is the model above. With ``causal=True`` (an extension, not
in the paper) no output frame depends on a later input frame, so the model
streams frame by frame (``speechbrain_cmcr.inference.streaming``):

- the (3, 2) convolutions and transposed convolutions see the frame before
  instead of the frame after (one zero frame before the signal);
- the contrastive attention's similarities over frames
  (``attention_axis="frequency"``) become running means: at frame t, the sum
  of ``q k^T`` over the frames up to t divided by their number. At the last
  frame of an utterance this is the offline model's similarity. Cost: a
  ``D x D`` sum per query carried along (state), and offline a
  ``[B, 2, D, D, T]`` tensor of cumulative sums instead of ``[B, D, D]``
  (20 MB for 10 s at D = 64). Being a mean over the whole past, it adapts
  ever more slowly to a change of noise in a long stream (a decaying mean
  would forget, but would then no longer match the offline definition);
- ``attention_axis="time"`` gets a causal mask (frames attend to the frames
  up to them); its state would grow with the input, so it does not stream;
- the interactive attention's descriptor becomes the running mean of
  ``R + I`` over the frames up to t (one MLP per frame instead of one per
  utterance, a negligible cost).

Everything else works frame by frame already: the 1x1 convolutions, gates
and LayerNorms, and BatchNorm outside training (in training, BatchNorm
normalises with statistics of the whole batch, as in any causal model
trained with it). The STFT itself looks ahead: the output is final one
window (``n_fft - 1`` samples) after the input, see :class:`CMCRNet`.

Cost of the default configuration (``benchmarks/model_cost.py``):
3.65 M parameters; per second of 16 kHz audio, 0.97 G multiply-accumulates
for ``enhance`` (speech decoder only) and 1.45 G for the training forward
(both decoders). Outside training, BatchNorm is folded into the preceding
convolution.

Authors
-------
speechbrain-cmcr contributors
"""

import logging
import math
from typing import List, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from speechbrain.processing.features import ISTFT, STFT
from torch import nn

logger = logging.getLogger(__name__)

WINDOWS = {"hamming": torch.hamming_window, "hann": torch.hann_window}


class StreamState(NamedTuple):
    """What a causal :class:`CMCRNet` carries from one call of
    :meth:`CMCRNet.stream` to the next (all tensors, batch first).

    - ``frames`` [B]: frames seen so far;
    - ``encoder``: the last input frame [B, C_in, F_in, 1] of every encoder
      block (its (3, 2) kernel sees the frame before);
    - ``attention``: per collaboration module, the sums of ``q k^T`` of the
      relevant and irrelevant queries over the frames seen [B, 2, D, D];
    - ``fusion``: per module, the sum of the interactive attention's
      descriptors [B, C];
    - ``decoder``: the last input frame of every speech decoder block.
    """

    frames: torch.Tensor
    encoder: Tuple[torch.Tensor, ...]
    attention: Tuple[torch.Tensor, ...]
    fusion: Tuple[torch.Tensor, ...]
    decoder: Tuple[torch.Tensor, ...]


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


def running_mean(x, mask, past_sum=None, past_frames=None):
    """Mean of ``x`` over the valid frames up to each frame: the causal
    counterpart of a mean over the whole input.

    Arguments
    ---------
    x : torch.Tensor
        Values ``[B, ..., T]``, zero on padding.
    mask : torch.Tensor
        Frame mask ``[B, T]``.
    past_sum : torch.Tensor
        Sum ``[B, ...]`` of ``x`` over the frames before these (a stream's
        earlier calls); None at the start of the signal.
    past_frames : torch.Tensor
        Number ``[B]`` of valid frames before these; None at the start.

    Returns
    -------
    mean : torch.Tensor
        ``[B, ..., T]``; at the last frame of a signal, its plain mean.
    total : torch.Tensor
        Sum ``[B, ...]`` up to the last frame (the next call's
        ``past_sum``).

    Example
    -------
    >>> x = torch.tensor([[[1.0, 3.0, 5.0, 0.0]]])
    >>> mean, total = running_mean(x, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    >>> mean, total
    (tensor([[[1., 2., 3., 3.]]]), tensor([[9.]]))
    >>> running_mean(x[..., 2:], torch.ones(1, 2), x[..., :2].sum(-1),
    ...              torch.tensor([2.0]))[0]
    tensor([[[3.0000, 2.2500]]])
    """
    total = torch.cumsum(x, dim=-1)  # [B, ..., T]
    frames = torch.cumsum(mask, dim=1)  # [B, T]
    if past_sum is not None:
        total = total + past_sum[..., None]
        frames = frames + past_frames[:, None]
    shape = (frames.shape[0],) + (1,) * (x.dim() - 2) + (frames.shape[1],)
    return total / frames.clamp(min=1).view(shape), total[..., -1]


class EncoderBlock(nn.Module):
    """Conv2d with kernel (3, 2) and stride (2, 1), BatchNorm, ELU.

    Arguments
    ---------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    causal : bool
        Output t sees input frames t-1 and t (True) or t and t+1 (False).

    Example
    -------
    >>> block = EncoderBlock(2, 16)
    >>> block(torch.randn(1, 2, 257, 10)).shape
    torch.Size([1, 16, 128, 10])
    """

    def __init__(self, in_channels, out_channels, causal=False):
        super().__init__()
        self.causal = causal
        # Not causal: one zero frame on both sides gives T + 1 outputs, the
        # last T see frames t, t+1. Causal: the frame before (``history``)
        # is prepended and there is no padding.
        self.crop = slice(None) if causal else slice(1, None)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=(3, 2),
            stride=(2, 1),
            padding=(0, 0 if causal else 1),
        )
        self.norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.ELU()

    def forward(self, x, history=None):
        """Encodes ``x`` [B, C_in, F, T] into [B, C_out, (F - 1) // 2, T];
        a causal block also takes the input frame before ``x``, ``history``
        [B, C_in, F, 1] (None: zeros, the start of the signal)."""
        if self.causal:
            x = with_history(x, history)  # [B, C_in, F, T + 1]
        return self.activation(conv_norm(x, self.conv, self.norm, self.crop))


def with_history(x, history=None):
    """``x`` [B, C, F, T] with the frame before it, ``history`` [B, C, F, 1]
    (zeros if None), prepended: [B, C, F, T + 1].

    Arguments
    ---------
    x : torch.Tensor
        Frames of a causal block's input.
    history : torch.Tensor
        The input frame before ``x``, None at the start of the signal.

    Returns
    -------
    torch.Tensor
        The frames the block's (3, 2) kernel sees.

    Example
    -------
    >>> with_history(torch.ones(1, 1, 1, 2))
    tensor([[[[0., 1., 1.]]]])
    """
    if history is None:
        history = x.new_zeros(x.shape[:3] + (1,))
    return torch.cat([history, x], dim=-1)


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
        self.causal = causal
        # Not causal: the transposed convolution gives T + 1 frames, keep
        # the last T (mirroring the encoder). Causal: the frame before
        # (``history``) is prepended and a padding of one frame crops the
        # T + 2 outputs to the T that see frames t-1 and t.
        self.crop = slice(None) if causal else slice(1, None)
        self.conv = nn.ConvTranspose2d(
            in_channels,
            out_channels,
            kernel_size=(3, 2),
            stride=(2, 1),
            padding=(0, 1 if causal else 0),
            output_padding=(output_padding, 0),
        )
        if last:
            self.post = nn.Identity()
        else:
            self.post = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ELU())

    def forward(self, x, history=None):
        """Decodes ``x`` [B, C_in, F, T] into [B, C_out, 2F + 1 (+1), T];
        a causal block also takes the input frame before ``x``, ``history``
        [B, C_in, F, 1] (None: zeros, the start of the signal)."""
        if self.causal:
            x = with_history(x, history)  # [B, C_in, F, T + 1]
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

    def forward(self, x, mask, histories=None):
        """Returns the output of every block for ``x`` [B, 2, F, T] and the
        frame ``mask`` [B, T]. A causal encoder takes ``histories``, the
        input frame before ``x`` of every block (None: the start)."""
        histories = histories or [None] * len(self.blocks)
        outputs = []
        for block, history in zip(self.blocks, histories):
            x = block(x, history) * mask[:, None, None, :]
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
    >>> decoded, last_inputs = decoder(skips[-1], list(skips), mask)
    >>> decoded.shape, last_inputs
    (torch.Size([1, 2, 33, 5]), [])
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

    def forward(self, x, skips, mask, histories=None):
        """Decodes the bottleneck view ``x`` [B, C, F', T] with the encoder
        outputs ``skips`` into [B, 2, F, T]. It empties the list ``skips``,
        deepest first, so that each skip can be freed once used.

        A causal decoder takes ``histories``, the input frame before ``x``
        of every block, and then returns, with the decoded frames, the last
        input frame of every block (the next call's histories); without
        histories (the start of the signal), that list is empty.
        """
        time_mask = mask[:, None, None, :]
        last_inputs = []
        for index, (gate, block) in enumerate(zip(self.gates, self.blocks)):
            skip = skips.pop()
            x = torch.cat([x, gate(skip, x)], dim=1)  # [B, 2C, F', T]
            history = None
            if histories is not None:
                history = histories[index]
                last_inputs.append(x[..., -1:])
            x = block(x, history) * time_mask
        return x, last_inputs


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
    causal : bool
        Frame t uses frames up to t only: "frequency" averages the
        similarities over the frames up to t (:func:`running_mean`), "time"
        masks later frames.

    Example
    -------
    >>> attention = ContrastiveAttention(8, 7, 16)
    >>> x, mask = torch.randn(2, 8, 7, 5), torch.ones(2, 5)
    >>> relevant, irrelevant, total = attention(x, mask)
    >>> relevant.shape == irrelevant.shape == x.shape, total
    (True, None)
    >>> causal = ContrastiveAttention(8, 7, 16, causal=True).eval()
    >>> causal(x, mask)[2].shape
    torch.Size([2, 2, 16, 16])
    """

    def __init__(
        self,
        channels,
        freq_bins,
        attention_dim,
        attention_axis="frequency",
        causal=False,
    ):
        super().__init__()
        if attention_axis not in ("frequency", "time"):
            raise ValueError(
                "attention_axis must be 'frequency' or 'time', "
                f"got {attention_axis!r}"
            )
        self.attention_axis = attention_axis
        self.causal = causal
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

    def forward(self, x, mask, past=None):
        """Returns R and I, both shaped like ``x`` [B, C, F', T], and the
        sums of ``q k^T`` of both queries up to the last frame [B, 2, D, D]
        for causal "frequency" attention (else None).

        ``past``: for causal "frequency" attention, the sums [B, 2, D, D]
        and the number of valid frames [B] before ``x`` (a stream's earlier
        calls); None at the start of the signal.
        """
        batch, channels, bins, frames = x.shape
        flat = x.reshape(batch, channels * bins, frames)  # [B, C*F', T]
        seq_mask = mask[:, None, :]  # [B, 1, T]
        q = conv_norm(flat, *self.query) * seq_mask  # [B, D, T]
        k = conv_norm(flat, *self.key) * seq_mask
        v = conv_norm(flat, *self.value) * seq_mask
        z = torch.sigmoid(self.gate(self.gate_query(q) + self.gate_key(k)))
        queries = (z * q, (1 - z) * q)
        total = None
        if self.causal and self.attention_axis == "frequency":
            attended, total = self._attend_running(
                torch.stack(queries, dim=1), k, v, mask, past
            )  # [B, 2, D, T]
            attended = attended.unbind(dim=1)
        else:
            attended = [self._attend(query, k, v, mask) for query in queries]
        streams = []
        for stream in attended:  # [B, D, T]
            out = conv_norm(stream, *self.out) * seq_mask  # [B, C*F', T]
            streams.append(out.reshape(batch, channels, bins, frames))
        return streams[0], streams[1], total

    @staticmethod
    def _attend_running(queries, key, value, mask, past):
        """Causal "frequency" attention of both ``queries`` [B, 2, D, T] over
        ``key``/``value`` [B, D, T]: at frame t, the similarities are the
        mean of ``q k^T`` over the frames up to t. Returns the attended
        values [B, 2, D, T] and the sums [B, 2, D, D] up to the last frame."""
        products = queries[:, :, :, None] * key[:, None, None]  # [B,2,D,D,T]
        scores, total = running_mean(products, mask, *(past or ()))
        weights = torch.softmax(scores, dim=3)  # [B, 2, D, D, T]
        attended = (weights * value[:, None, None]).sum(dim=3)  # [B, 2, D, T]
        return attended, total

    def _attend(self, query, key, value, mask):
        """Attention of ``query`` over ``key``/``value`` [B, D, T]; causal
        "time" attention attends to the frames up to each query only."""
        if self.attention_axis == "frequency":
            valid = mask.sum(dim=1).clamp(min=1)[:, None, None]  # [B, 1, 1]
            scores = query @ key.transpose(1, 2) / valid  # [B, D, D]
            return torch.softmax(scores, dim=-1) @ value  # [B, D, T]
        keep = mask[:, None, :].bool()  # [B, 1, T] keys to attend to
        if self.causal:
            frames = mask.shape[1]
            past = torch.ones(frames, frames, dtype=torch.bool).tril()
            keep = keep & past.to(mask.device)  # [B, T, T]
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
    causal : bool
        The descriptor of frame t averages the frames up to t only
        (:func:`running_mean`), so the weights change from frame to frame.

    Example
    -------
    >>> fusion = InteractiveAttention(8, reduction=2)
    >>> r, i = fusion(torch.randn(2, 8, 7, 5), torch.randn(2, 8, 7, 5),
    ...               torch.ones(2, 5))
    >>> r.shape
    torch.Size([2, 8, 7, 5])
    """

    def __init__(self, channels, reduction=4, causal=False):
        super().__init__()
        self.causal = causal
        hidden = max(channels // reduction, 1)
        self.trunk = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU())
        self.relevant_head = nn.Linear(hidden, channels)
        self.irrelevant_head = nn.Linear(hidden, channels)

    def forward(self, relevant, irrelevant, mask):
        """Returns the reweighted R' and I' [B, C, F', T]."""
        weight_r, weight_i, _ = self.weights(relevant, irrelevant, mask)
        return relevant * weight_r, irrelevant * weight_i

    def weights(self, relevant, irrelevant, mask, past=None):
        """Returns the weights of R and of I, [B, C, 1, 1] (causal:
        [B, C, 1, T]), and, if causal, the sum of the descriptors up to the
        last frame [B, C] (else None).

        ``past``: if causal, the sum of the descriptors [B, C] and the
        number of valid frames [B] before these; None at the start.
        """
        if self.causal:
            descriptors = (relevant + irrelevant).mean(dim=2)  # [B, C, T]
            summary, total = running_mean(descriptors, mask, *(past or ()))
            hidden = self.trunk(summary.transpose(1, 2))  # [B, T, C / r]
            logits = torch.stack(
                [self.relevant_head(hidden), self.irrelevant_head(hidden)]
            )  # [2, B, T, C]
            weights = torch.softmax(logits, dim=0).transpose(2, 3)
            weights = weights[:, :, :, None]  # [2, B, C, 1, T]
            return weights[0], weights[1], total
        bins = relevant.shape[2]
        count = (mask.sum(dim=1) * bins).clamp(min=1)[:, None]  # [B, 1]
        summary = (relevant + irrelevant).sum(dim=(2, 3)) / count  # [B, C]
        hidden = self.trunk(summary)
        logits = torch.stack(
            [self.relevant_head(hidden), self.irrelevant_head(hidden)]
        )  # [2, B, C]
        weights = torch.softmax(logits, dim=0)[..., None, None]
        return weights[0], weights[1], None


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
    causal : bool
        Running statistics over the past frames instead of the whole input
        (see :class:`ContrastiveAttention`, :class:`InteractiveAttention`).

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
        """Outputs of one module, each [B, C, F', T], and for a causal
        module the running sums of its statistics up to the last frame
        (attention [B, 2, D, D] or None, fusion [B, C])."""

        fused: torch.Tensor
        speech_view: torch.Tensor
        noise_view: torch.Tensor
        relevant: torch.Tensor
        irrelevant: torch.Tensor
        attention_sum: torch.Tensor = None
        fusion_sum: torch.Tensor = None

    def __init__(
        self,
        channels,
        freq_bins,
        attention_dim,
        attention_axis="frequency",
        fusion_reduction=4,
        causal=False,
    ):
        super().__init__()
        self.contrastive = ContrastiveAttention(
            channels, freq_bins, attention_dim, attention_axis, causal
        )
        self.interactive = InteractiveAttention(
            channels, fusion_reduction, causal
        )
        self.project = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ELU(),
        )
        self.norm = nn.LayerNorm([channels, freq_bins])

    def forward(self, x, mask, views=("fused", "streams"), past=None):
        """Processes ``x`` [B, C, F', T] with the frame ``mask`` [B, T].

        ``views`` names the outputs to compute among "fused" (the next
        module's input), "speech" and "noise" (the last module's outputs for
        the decoders) and "streams" (R and I, for the stream-contrast loss);
        the others are None.

        ``past``: for a causal module, the running sums (attention, fusion)
        and the number of valid frames [B] before ``x`` (a stream's earlier
        calls, see :class:`StreamState`); None at the start of the signal.
        """
        attention_past = fusion_past = None
        if past is not None:
            attention_sum, fusion_sum, frames = past
            attention_past = (attention_sum, frames)
            fusion_past = (fusion_sum, frames)
        relevant, irrelevant, attention_sum = self.contrastive(
            x, mask, attention_past
        )
        weights = self.interactive.weights(
            relevant, irrelevant, mask, fusion_past
        )
        proj_r, proj_i = self._project(
            x,
            relevant,
            irrelevant,
            weights[:2],
            "fused" in views or "noise" in views,
        )
        if "streams" not in views:
            relevant = irrelevant = None  # freed before the norms
        return self.Output(
            fused=self._view(x, mask, proj_r, proj_i, want="fused" in views),
            speech_view=self._view(x, mask, proj_r, want="speech" in views),
            noise_view=self._view(x, mask, proj_i, want="noise" in views),
            relevant=relevant,
            irrelevant=irrelevant,
            attention_sum=attention_sum,
            fusion_sum=weights[2],
        )

    def _project(self, x, relevant, irrelevant, weights, project_irrelevant):
        """Reweights the streams with the interactive attention's
        ``weights``, then projects each ``s`` as ``ELU(BN(conv([s, x])))``;
        the irrelevant one only if ``project_irrelevant`` (else None). The
        conv is linear, so its X half is computed once for both. The
        reweighted streams live only here, which bounds memory on long
        inputs."""
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


# Configuration keys added after checkpoints were first shipped, with the
# value that a checkpoint without them was trained with.
LATER_CONFIG_KEYS = {"level_norm": False, "mask_bound": None}
# The smallest RMS a level-normalised spectrum is divided by (silence).
LEVEL_FLOOR = 1e-5
# Configuration keys that change how the model runs but not its parameters:
# weights trained with one value can be fine-tuned with another.
FINE_TUNABLE_CONFIG_KEYS = ("causal",)


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
        False: the paper's offline model. True: no output frame depends on a
        later input frame (see the module docstring), so the model streams
        with :meth:`stream`. The STFT frames still span ``n_fft`` samples
        centred on their frame time, and a sample is final once every frame
        that overlaps it is done: output sample n depends on input samples up
        to ``n + n_fft - 1`` (one window, 32 ms by default) and no further.
    level_norm : bool
        True divides the noisy spectrum by its root-mean-square over the
        signal's frames and bins before the encoder, and multiplies the
        output back: the network then sees every input at the same level,
        and its output scales with the input exactly (without it, BatchNorm
        and ELU make the result depend on the loudness: the previous
        shipped model lost 0.1 PESQ on VoiceBank+DEMAND 10 dB quieter).
        It needs the whole signal, so not with ``causal``. False (the
        default, and what checkpoints without the key mean) feeds the
        spectrum as it is.
    mask_bound : float, optional
        With ``output="mask"``, a bound above 1 on the mask's magnitude: a
        mask ``M`` becomes ``M * b * tanh(|M| / b) / |M|`` (its phase kept),
        close to ``M`` where ``|M|`` is small and never above ``b``. It
        starts as a pass-through like the unbounded mask. None (the default,
        and what checkpoints without the key mean) leaves the mask
        unbounded. Measured on the small dynamic-mixing model (bound 1.2,
        one seed): it kept the validation CSIG of its worst epochs higher,
        but its last epoch scored 0.04 PESQ below the unbounded run's.

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

    A causal model enhances a spectrum frame by frame, carrying its state:

    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8, causal=True).eval()
    >>> spec = model.spectrum(noisy[:1])  # [1, T, F, 2]
    >>> state = model.stream_state()
    >>> frames = []
    >>> for t in range(spec.shape[1]):
    ...     frame, state = model.stream(spec[:, t : t + 1], state)
    ...     frames.append(frame)
    >>> offline = model.enhance_spectrum(spec)
    >>> torch.allclose(torch.cat(frames, dim=1), offline, atol=1e-5)
    True
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
        level_norm=False,
        mask_bound=None,
    ):
        super().__init__()
        if mask_bound is not None and (output != "mask" or mask_bound <= 1):
            raise ValueError(
                "mask_bound needs output='mask' and a bound above 1 (a "
                f"pass-through must stay reachable): {mask_bound!r}"
            )
        if level_norm and causal:
            raise ValueError(
                "level_norm needs the whole signal: a causal model cannot "
                "use it"
            )
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
            level_norm=level_norm,
            mask_bound=mask_bound,
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
        self.freq_sizes = freq_sizes
        self.encoder = Encoder(encoder_channels, causal)
        self.collaboration = nn.ModuleList(
            CollaborationModule(
                channels,
                bins,
                attention_dim,
                attention_axis,
                fusion_reduction,
                causal,
            )
            for _ in range(num_modules)
        )
        self.speech_decoder = Decoder(encoder_channels, freq_sizes, causal)
        self.noise_decoder = Decoder(encoder_channels, freq_sizes, causal)
        if output == "mask":
            # Start near speech = noisy, noise = 0 (see the module docstring).
            self._init_mask(self.speech_decoder, real=self._unbounded(1.0))
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
        spec, level = self._normalise_level(spec, mask)  # [B, 2, F, T]
        skips = self.encoder(spec, mask)
        speech_view, noise_view, streams, _ = self._collaborate(
            skips[-1], mask, with_noise, with_streams
        )
        # Each decoder empties the list it gets (freeing skips once used);
        # the speech decoder gets a copy when the noise decoder follows.
        speech_skips = list(skips) if with_noise else skips
        enhanced_spec = level * self._to_spectrum(
            self.speech_decoder(speech_view, speech_skips, mask)[0], spec
        )
        enhanced_wav = self._to_wav(enhanced_spec, num_samples, lengths)
        noise_spec = noise_wav = None
        if with_noise:
            noise_spec = level * self._to_spectrum(
                self.noise_decoder(noise_view, skips, mask)[0], spec
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

    def _collaborate(
        self, bottleneck, mask, with_noise, with_streams, state=None
    ):
        """Runs the collaboration modules on the ``bottleneck`` [B, C, F', T];
        returns the speech view, the noise view (None without noise), the
        streams of every module (if kept) and the running sums (attention,
        fusion) of every module (None unless causal). Without modules (an
        ablation) both views are the bottleneck. A causal model takes the
        running sums of a :class:`StreamState`."""
        x = speech_view = noise_view = bottleneck
        streams, sums = [], []
        final_views = ("speech", "noise") if with_noise else ("speech",)
        kept = ("streams",) if with_streams else ()
        for index, module in enumerate(self.collaboration):
            final = index == len(self.collaboration) - 1
            past = None
            if state is not None:
                past = (state.attention[index], state.fusion[index])
                past += (state.frames,)
            views = (final_views if final else ("fused",)) + kept
            out = module(x, mask, views, past)
            if with_streams:
                streams.append((out.relevant, out.irrelevant))
            sums.append((out.attention_sum, out.fusion_sum))
            x, speech_view, noise_view = (
                out.fused,
                out.speech_view,
                out.noise_view,
            )
        return speech_view, noise_view, streams, sums

    def enhance_spectrum(self, noisy_spec):
        """Enhances whole (unpadded) spectra: :meth:`enhance` without the STFT
        and iSTFT (what the ONNX offline graph holds).

        Arguments
        ---------
        noisy_spec : torch.Tensor
            Noisy spectra [B, T, F, 2], as :meth:`spectrum` gives them.

        Returns
        -------
        torch.Tensor
            The enhanced spectra [B, T, F, 2].
        """
        mask = noisy_spec.new_ones(noisy_spec.shape[:2])  # [B, T]
        spec = noisy_spec.permute(0, 3, 2, 1)  # [B, 2, F, T]
        spec, level = self._normalise_level(spec, mask)
        skips = self.encoder(spec, mask)
        speech_view = self._collaborate(skips[-1], mask, False, False)[0]
        decoded, _ = self.speech_decoder(speech_view, skips, mask)
        return level * self._to_spectrum(decoded, spec)

    def _normalise_level(self, spec, mask):
        """With ``level_norm``, the spectrum [B, 2, F, T] divided by its RMS
        over the frames of ``mask`` [B, T] and all bins, and that RMS
        [B, 1, 1, 1] (the factor that restores the output's level); without
        it, the spectrum as it is and 1."""
        if not self.config["level_norm"]:
            return spec, 1.0
        power = (spec**2).sum(dim=1) * mask[:, None, :]  # [B, F, T]
        values = mask.sum(dim=1) * spec.shape[2]  # [B]
        rms = (power.sum(dim=(1, 2)) / values.clamp(min=1)).sqrt()
        level = rms.clamp(min=LEVEL_FLOOR)[:, None, None, None]
        return spec / level, level

    def stream_state(self, batch_size=1):
        """The :class:`StreamState` of a causal model at the start of a
        signal: zero history frames and zero sums.

        Arguments
        ---------
        batch_size : int
            Number of independent streams.

        Returns
        -------
        StreamState
            The first ``state`` of :meth:`stream`.
        """
        channels = [2] + self.config["encoder_channels"]
        sizes = self.freq_sizes
        attention_dim = self.config["attention_dim"]
        like = self.encoder.blocks[0].conv.weight  # device and dtype

        def zeros(*shape):
            return like.new_zeros((batch_size,) + shape)

        def sums(*shape):
            return tuple(zeros(*shape) for _ in self.collaboration)

        return StreamState(
            frames=zeros(),
            encoder=tuple(
                zeros(c, f, 1) for c, f in zip(channels[:-1], sizes[:-1])
            ),
            attention=sums(2, attention_dim, attention_dim),
            fusion=sums(channels[-1]),
            decoder=tuple(
                zeros(2 * c, f, 1)
                for c, f in zip(channels[:0:-1], sizes[:0:-1])
            ),
        )

    def stream(self, noisy_spec, state):
        """Enhances the next frames of a stream (causal models only): the
        frames and state that :meth:`enhance_spectrum` on the whole signal
        would have at these frames, so that frame-by-frame output equals
        offline output.

        Arguments
        ---------
        noisy_spec : torch.Tensor
            The next noisy frames [B, T, F, 2] (T >= 1), as from
            :meth:`spectrum`.
        state : StreamState
            From :meth:`stream_state` at the start, then from the previous
            call.

        Returns
        -------
        enhanced_spec : torch.Tensor
            The enhanced frames [B, T, F, 2].
        state : StreamState
            The state after these frames.
        """
        if not self.config["causal"]:
            raise ValueError("only a causal CMCRNet (causal=True) streams")
        if self.config["attention_axis"] != "frequency":
            raise ValueError(
                'attention_axis="time" does not stream: its state (every '
                "past frame) would grow with the input"
            )
        mask = noisy_spec.new_ones(noisy_spec.shape[:2])  # [B, T]
        spec = noisy_spec.permute(0, 3, 2, 1)  # [B, 2, F, T]
        skips = self.encoder(spec, mask, state.encoder)
        encoder_inputs = [spec] + skips[:-1]
        speech_view, _, _, sums = self._collaborate(
            skips[-1], mask, False, False, state
        )
        decoded, decoder_inputs = self.speech_decoder(
            speech_view, skips, mask, state.decoder
        )
        new_state = StreamState(
            frames=state.frames + noisy_spec.shape[1],
            encoder=tuple(x[..., -1:] for x in encoder_inputs),
            attention=tuple(attention for attention, _ in sums),
            fusion=tuple(fusion for _, fusion in sums),
            decoder=tuple(decoder_inputs),
        )
        return self._to_spectrum(decoded, spec), new_state

    def spectrum(self, wavs):
        """STFT [B, T, F, 2] of ``wavs`` [B, L] padded to whole hops, so that
        the last frames cover the end of the signal; use it for targets."""
        return self.stft(F.pad(wavs, (0, -wavs.shape[1] % self.hop_samples)))

    def enhance(self, noisy, lengths=None):
        """Returns only the enhanced waveform [B, L] (no noise decoder)."""
        out = self.forward(noisy, lengths, with_noise=False, with_streams=False)
        return out.enhanced_wav

    def _unbounded(self, magnitude):
        """The raw mask magnitude that ``mask_bound`` maps to ``magnitude``."""
        bound = self.config["mask_bound"]
        if bound is None:
            return magnitude
        return bound * math.atanh(magnitude / bound)

    def _bounded(self, mask):
        """``mask`` [B, 2, F, T] with its magnitude capped by ``mask_bound``."""
        bound = self.config["mask_bound"]
        if bound is None:
            return mask
        magnitude = mask.square().sum(dim=1, keepdim=True).add(1e-12).sqrt()
        return mask * (bound * torch.tanh(magnitude / bound) / magnitude)

    def _to_spectrum(self, decoded, noisy):
        """Decoder output [B, 2, F, T] to a spectrum [B, T, F, 2]."""
        if self.output == "mask":
            decoded = self._bounded(decoded)  # [B, 2, F, T]
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
        saved = {**LATER_CONFIG_KEYS, **state.get("config", {})}
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


def load_for_fine_tuning(model, path):
    """Pretrainer hook for fine-tuning (the recipe's ``init_from``): loads
    the CMCRNet state dict at ``path`` into ``model`` strictly, also when it
    was trained with another value of a key in ``FINE_TUNABLE_CONFIG_KEYS``
    (offline weights fine-tuned as a causal model). Any other configuration
    difference is refused, as when a checkpoint is recovered.

    Arguments
    ---------
    model : CMCRNet
        Receives the weights, and keeps its own configuration.
    path : str or os.PathLike
        A file written by ``torch.save(cmcr_net.state_dict(), path)``.

    Returns
    -------
    switched : dict
        ``{key: (saved value, model's value)}`` of the keys that differ.

    Example
    -------
    >>> offline = CMCRNet(encoder_channels=[8], num_modules=1, attention_dim=8)
    >>> path = getfixture("tmp_path") / "offline.ckpt"
    >>> torch.save(offline.state_dict(), path)
    >>> causal = CMCRNet(
    ...     encoder_channels=[8], num_modules=1, attention_dim=8, causal=True
    ... )
    >>> load_for_fine_tuning(causal, path)
    {'causal': (False, True)}
    >>> pairs = zip(causal.parameters(), offline.parameters())
    >>> all(torch.equal(mine, saved) for mine, saved in pairs)
    True
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = state.get("_extra_state", {}).get("config", {})
    config = {**LATER_CONFIG_KEYS, **saved}
    switched = {
        key: (config.get(key), model.config[key])
        for key in FINE_TUNABLE_CONFIG_KEYS
        if config.get(key) != model.config[key]
    }
    for key, (before, value) in switched.items():
        logger.warning(
            f"Fine-tuning weights trained with {key}={before} as {key}={value}"
        )
        config[key] = value
    model.load_state_dict({**state, "_extra_state": {"config": config}})
    return switched
