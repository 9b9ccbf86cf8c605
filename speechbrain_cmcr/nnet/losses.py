"""Losses of CMCR-Net: spectral reconstruction, contrastive regularization
(CR), the optional stream-contrast term of the collaboration module and an
optional differentiable PESQ term.

Each loss follows SpeechBrain's signature ``(predictions, targets, ...,
length=None, reduction="mean")`` with relative lengths in [0, 1] and
``reduction="batch"`` giving one value per utterance.

Authors
-------
speechbrain-cmcr contributors
"""

import torch
from speechbrain.nnet.losses import compute_masked_loss
from torch import nn
from torch_pesq import PesqLoss


def compress_spectrum(spec, compress_factor, eps=1e-8):
    """Power-law compresses a spectrum's magnitude, keeping its phase.

    Arguments
    ---------
    spec : torch.Tensor
        Spectrum [..., 2] (real, imaginary).
    compress_factor : float
        Exponent applied to the magnitude (1.0: unchanged).
    eps : float
        Keeps the gradient of the magnitude finite at zero.

    Returns
    -------
    compressed : torch.Tensor
        Compressed spectrum [..., 2].
    magnitude : torch.Tensor
        Its magnitude [...].

    Example
    -------
    >>> spec, mag = compress_spectrum(torch.tensor([[3.0, 4.0]]), 0.5)
    >>> mag.round(decimals=3)
    tensor([2.2360])
    """
    magnitude = torch.sqrt(spec.pow(2).sum(-1) + eps)
    compressed_mag = magnitude.pow(compress_factor)
    compressed = spec * (compressed_mag / magnitude).unsqueeze(-1)
    return compressed, compressed_mag


class SpectralReconstructionLoss(nn.Module):
    """Weighted MSE of compressed complex spectra and of their magnitudes.

    Arguments
    ---------
    complex_weight : float
        Weight of the complex (real and imaginary) term.
    magnitude_weight : float
        Weight of the magnitude term.
    compress_factor : float
        Power-law compression of magnitudes before comparing (0.3 as in
        MP-SENet and CMGAN; 1.0 compares raw spectra).

    Example
    -------
    >>> loss = SpectralReconstructionLoss()
    >>> target = torch.randn(2, 10, 257, 2)
    >>> float(loss(target, target))
    0.0
    >>> loss(torch.zeros_like(target), target, reduction="batch").shape
    torch.Size([2])
    """

    def __init__(
        self, complex_weight=1.0, magnitude_weight=1.0, compress_factor=0.3
    ):
        super().__init__()
        self.complex_weight = complex_weight
        self.magnitude_weight = magnitude_weight
        self.compress_factor = compress_factor

    def forward(self, predictions, targets, length=None, reduction="mean"):
        """Computes the loss between spectra [B, T, F, 2]."""
        return compute_masked_loss(
            self._elementwise,
            predictions,
            targets,
            length,
            mask_shape="loss",
            reduction=reduction,
        )

    def _elementwise(self, predictions, targets):
        """Loss of each time-frequency bin [B, T, F]."""
        pred, pred_mag = compress_spectrum(predictions, self.compress_factor)
        target, target_mag = compress_spectrum(targets, self.compress_factor)
        complex_term = (pred - target).pow(2).mean(-1)
        magnitude_term = (pred_mag - target_mag).pow(2)
        return (
            self.complex_weight * complex_term
            + self.magnitude_weight * magnitude_term
        )


def _l1(a, b):
    return (a - b).abs()


def _squared(a, b):
    return (a - b).pow(2)


DISTANCES = {"l1": _l1, "mse": _squared}


class ContrastiveRegularization(nn.Module):
    """Pulls the enhanced speech toward the clean speech and pushes it away
    from the noisy mixture in the representation space of a frozen teacher::

        CR = sum_k w_k * D(phi_k(s_hat), phi_k(s))
                       / (D(phi_k(s_hat), phi_k(x)) + eps)

    where ``phi_k`` sums the teacher layers of group k. The clean and noisy
    passes run together, without autograd; only the enhanced pass carries a
    gradient, which flows through the teacher's input into the model.

    Arguments
    ---------
    teacher : speechbrain_cmcr.lobes.teachers.FrozenTeacher
        Maps [B, L] to a list of [B, T', D] layer outputs.
    layer_groups : Sequence[Sequence[int]]
        Layer indices summed into each representation level. The default
        takes wav2vec2-base's 12 transformer layers (hidden states 1..12) in
        4 groups of 3, as the authors' code does.
    weights : Sequence[float]
        One weight per group; None gives equal weights summing to 1.
    distance : str
        "l1" (AECR-Net, the origin of this ratio form) or "mse".
    eps : float
        Keeps the ratio finite when the estimate equals the mixture.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_cmcr.lobes.teachers import (
    ...     HuggingFaceSSLTeacher, save_random_ssl_teacher)
    >>> folder = tempfile.mkdtemp()
    >>> save_random_ssl_teacher(folder, num_hidden_layers=2)
    >>> cr = ContrastiveRegularization(
    ...     HuggingFaceSSLTeacher(folder), layer_groups=[[1], [2]])
    >>> clean, noise = torch.randn(2, 8000), torch.randn(2, 8000)
    >>> noisy = clean + noise
    >>> near_clean = cr(clean + 0.1 * noise, clean, noisy)
    >>> near_noisy = cr(noisy - 0.1 * noise, clean, noisy)
    >>> bool(near_clean < near_noisy)
    True
    """

    def __init__(
        self,
        teacher,
        layer_groups=((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12)),
        weights=None,
        distance="l1",
        eps=1e-7,
    ):
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(
                f"distance must be one of {sorted(DISTANCES)}, got {distance!r}"
            )
        if weights is None:
            weights = [1.0 / len(layer_groups)] * len(layer_groups)
        if len(weights) != len(layer_groups):
            raise ValueError(
                f"{len(weights)} weights for {len(layer_groups)} layer groups"
            )
        self.teacher = teacher
        self.layer_groups = [list(group) for group in layer_groups]
        self.weights = list(weights)
        self.distance = DISTANCES[distance]
        self.eps = eps

    def forward(
        self, predictions, targets, negatives, length=None, reduction="mean"
    ):
        """Computes CR for enhanced ``predictions``, clean ``targets`` and
        noisy ``negatives``, all waveforms [B, L]."""
        batch = predictions.shape[0]
        if length is None:
            length = torch.ones(batch, device=predictions.device)
        with torch.no_grad():
            references = self.teacher(
                torch.cat([targets, negatives]), torch.cat([length, length])
            )
        estimates = self.teacher(predictions, length)
        total = 0.0
        for weight, group in zip(self.weights, self.layer_groups):
            estimate = self._level(estimates, group)  # [B, T', D]
            reference = self._level(references, group)  # [2B, T', D]
            positive = self._distance(estimate, reference[:batch], length)
            negative = self._distance(estimate, reference[batch:], length)
            total = total + weight * positive / (negative + self.eps)
        if reduction == "batch":
            return total
        return total.mean()

    def _level(self, layers, group):
        """Sums the teacher layers of one group."""
        if max(group) >= len(layers):
            raise ValueError(
                f"layer group {group} needs layer {max(group)}, but the "
                f"teacher returns {len(layers)} layers (0..{len(layers) - 1})"
            )
        return torch.stack([layers[i] for i in group]).sum(0)

    def _distance(self, a, b, length):
        """Mean distance over valid frames and features, per utterance [B]."""
        return compute_masked_loss(
            self.distance, a, b, length, mask_shape="loss", reduction="batch"
        )


class StreamContrastLoss(nn.Module):
    """Drives the relevant and irrelevant streams of a collaboration module
    apart: the squared cosine similarity of their per-frame features.

    Arguments
    ---------
    eps : float
        Keeps the cosine defined on all-zero frames.

    Example
    -------
    >>> loss = StreamContrastLoss()
    >>> stream = torch.randn(2, 8, 7, 5)
    >>> round(float(loss(stream, -stream)), 4)
    1.0
    >>> float(loss(stream, torch.zeros_like(stream)))
    0.0
    """

    def __init__(self, eps=1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, predictions, targets, length=None, reduction="mean"):
        """Compares the streams ``predictions`` (relevant) and ``targets``
        (irrelevant), both [B, C, F', T]."""
        relevant = predictions.flatten(1, 2).transpose(1, 2)  # [B, T, C*F']
        irrelevant = targets.flatten(1, 2).transpose(1, 2)
        return compute_masked_loss(
            self._elementwise,
            relevant,
            irrelevant,
            length,
            mask_shape="loss",
            reduction=reduction,
        )

    def _elementwise(self, a, b):
        """Squared cosine of each frame [B, T]."""
        cosine = torch.nn.functional.cosine_similarity(
            a, b, dim=-1, eps=self.eps
        )
        return cosine.pow(2)


class PerceptualQualityLoss(nn.Module):
    """A differentiable approximation of wide-band PESQ (ITU-T P.862),
    from ``torch_pesq``: the weighted symmetric and asymmetric loudness
    disturbances that P.862 maps to its score, without its time alignment.
    Lower is better; 0 for a perfect copy of the target.

    Arguments
    ---------
    sample_rate : int
        Sample rate of the waveforms (resampled to 16 kHz inside).

    Example
    -------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> loss = PerceptualQualityLoss(sample_rate=16000)
    >>> clean = torch.randn(2, 16000)
    >>> noisy = clean + 0.5 * torch.randn(2, 16000)
    >>> bool(loss(noisy, clean) > loss(clean, clean))
    True
    >>> loss(noisy, clean, reduction="batch").shape
    torch.Size([2])
    """

    def __init__(self, sample_rate=16000):
        super().__init__()
        self.pesq = PesqLoss(factor=1.0, sample_rate=sample_rate)

    def forward(self, predictions, targets, length=None, reduction="mean"):
        """Computes the loss between waveforms [B, L].

        Arguments
        ---------
        predictions : torch.Tensor
            Enhanced waveforms [B, L].
        targets : torch.Tensor
            Clean waveforms [B, L].
        length : torch.Tensor
            Relative lengths [B]; each utterance is scored on its own
            samples only (padding would count as silence).
        reduction : str
            "mean" (a scalar) or "batch" (one value per utterance).

        Returns
        -------
        torch.Tensor
            The loss.
        """
        self.pesq.to(predictions.device)  # its filters follow the batch
        if length is None or bool((length == 1).all()):
            per_utterance = self.pesq(targets, predictions)  # [B]
        else:
            samples = torch.round(length * targets.shape[1]).long()
            per_utterance = torch.cat(
                [
                    self.pesq(target[None, :n], pred[None, :n])
                    for pred, target, n in zip(predictions, targets, samples)
                ]
            )  # [B]
        per_utterance = per_utterance.to(predictions.dtype)
        if reduction == "batch":
            return per_utterance
        return per_utterance.mean()


class CMCRLoss(nn.Module):
    """The CMCR-Net training objective::

        total = speech_loss + noise_weight * noise_loss
                + cr_weight * ramp * CR + stream_weight * stream_contrast
                + perceptual_weight * perceptual

    where ``ramp = min(1, step / cr_warmup_steps)`` phases CR in over the
    first optimizer steps (1 without a warm-up or a step).

    Arguments
    ---------
    reconstruction : SpectralReconstructionLoss
        Applied to the speech and to the noise estimates.
    noise_weight : float
        Weight of the noise branch (target: noisy minus clean spectrum).
    contrastive : ContrastiveRegularization
        The CR term; None switches it off.
    cr_weight : float
        Its weight (lambda_cr).
    cr_warmup_steps : int
        Optimizer steps over which the CR weight rises linearly from 0 to
        ``cr_weight`` (0: full weight from the first step). The model starts
        near a pass-through of the noisy input, where CR's denominator, the
        distance to the noisy input, is near zero and its gradient only
        pushes away from the input; reconstruction leads the first steps.
    stream_contrast : StreamContrastLoss
        The collaboration module's stream term; None switches it off.
    stream_weight : float
        Its weight, averaged over the stacked modules.
    perceptual : PerceptualQualityLoss
        A PESQ-like term on the enhanced waveform; None switches it off.
    perceptual_weight : float
        Its weight.

    Example
    -------
    >>> from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8)
    >>> objective = CMCRLoss(SpectralReconstructionLoss(),
    ...                      stream_contrast=StreamContrastLoss())
    >>> clean, noisy = torch.randn(2, 800), torch.randn(2, 800)
    >>> terms = objective(model(noisy), clean, noisy, model)
    >>> sorted(terms)
    ['cr', 'noise', 'perceptual', 'speech', 'stream', 'total']
    """

    def __init__(
        self,
        reconstruction,
        noise_weight=1.0,
        contrastive=None,
        cr_weight=0.1,
        cr_warmup_steps=0,
        stream_contrast=None,
        stream_weight=0.0,
        perceptual=None,
        perceptual_weight=0.0,
    ):
        super().__init__()
        if cr_warmup_steps < 0:
            raise ValueError(
                f"cr_warmup_steps must be 0 or more, got {cr_warmup_steps}"
            )
        self.cr_warmup_steps = cr_warmup_steps
        self.reconstruction = reconstruction
        self.noise_weight = noise_weight
        self.contrastive = contrastive
        self.cr_weight = cr_weight
        self.stream_contrast = stream_contrast
        self.stream_weight = stream_weight
        self.perceptual = perceptual
        self.perceptual_weight = perceptual_weight

    def forward(self, output, clean, noisy, model, length=None, step=None):
        """Returns a dict of the terms and their weighted ``total``.

        Arguments
        ---------
        output : speechbrain_cmcr.lobes.models.cmcr_net.CMCROutput
            The model's output for ``noisy``.
        clean : torch.Tensor
            Clean waveforms [B, L].
        noisy : torch.Tensor
            Noisy waveforms [B, L].
        model : speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet
            Gives the STFT of the clean target.
        length : torch.Tensor
            Relative lengths [B].
        step : int
            Optimizer steps taken so far, for the CR warm-up; None (outside
            training) gives CR its full weight.

        Returns
        -------
        dict
            ``speech``, ``noise``, ``cr``, ``stream``, ``perceptual`` and
            ``total`` (scalars), unweighted, and 0 where a weight is 0.
        """
        cr_weight = self.cr_weight * self.cr_ramp(step)
        clean_spec = model.spectrum(clean)  # [B, T, F, 2]
        noise_target = output.noisy_spec - clean_spec
        zero = clean.new_zeros(())
        terms = {
            "speech": self.reconstruction(
                output.enhanced_spec, clean_spec, length
            ),
            "noise": self.reconstruction(
                output.noise_spec, noise_target, length
            )
            if self.noise_weight
            else zero,
            "cr": self.contrastive(output.enhanced_wav, clean, noisy, length)
            if self.contrastive is not None and cr_weight
            else zero,
            "stream": torch.stack(
                [self.stream_contrast(r, i, length) for r, i in output.streams]
            ).mean()
            if self.stream_contrast is not None and self.stream_weight
            else zero,
            "perceptual": self.perceptual(output.enhanced_wav, clean, length)
            if self.perceptual is not None and self.perceptual_weight
            else zero,
        }
        terms["total"] = (
            terms["speech"]
            + self.noise_weight * terms["noise"]
            + cr_weight * terms["cr"]
            + self.stream_weight * terms["stream"]
            + self.perceptual_weight * terms["perceptual"]
        )
        return terms

    def cr_ramp(self, step=None):
        """The fraction of ``cr_weight`` applied after ``step`` optimizer
        steps.

        Arguments
        ---------
        step : int
            Optimizer steps taken; None gives 1.

        Returns
        -------
        float
            ``min(1, step / cr_warmup_steps)``, 1 without a warm-up.

        Example
        -------
        >>> objective = CMCRLoss(SpectralReconstructionLoss(),
        ...                      cr_warmup_steps=100)
        >>> [objective.cr_ramp(s) for s in (0, 25, 100, 500, None)]
        [0.0, 0.25, 1.0, 1.0, 1.0]
        """
        if step is None or not self.cr_warmup_steps:
            return 1.0
        return min(1.0, step / self.cr_warmup_steps)
