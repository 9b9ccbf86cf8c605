"""Behaviour of the losses: CR ordering, reductions, masking, errors."""

import pytest
import torch
from conftest import SAMPLE_RATE, harmonic_speech, mix_at_snr
from pesq import pesq

from speechbrain_cmcr.lobes.teachers import HuggingFaceSSLTeacher
from speechbrain_cmcr.nnet.losses import (
    ContrastiveRegularization,
    PerceptualQualityLoss,
    SpectralReconstructionLoss,
    StreamContrastLoss,
)


@pytest.fixture(scope="module")
def cr(tiny_teacher_dir):
    teacher = HuggingFaceSSLTeacher(tiny_teacher_dir)
    return ContrastiveRegularization(teacher, layer_groups=[[1, 2], [3, 4]])


def test_cr_is_lower_for_clean_than_for_noisy(cr, pair):
    clean, noisy = (x[None] for x in pair)
    assert cr(clean, clean, noisy) < 1e-3
    assert cr(noisy, clean, noisy) > 1e3  # d(x, x) = 0 in the denominator


def test_cr_falls_as_the_estimate_moves_from_noisy_to_clean(cr, pair):
    clean, noisy = (x[None] for x in pair)
    values = [
        float(cr(alpha * clean + (1 - alpha) * noisy, clean, noisy))
        for alpha in (0.1, 0.3, 0.5, 0.7, 0.9)
    ]
    assert values == sorted(values, reverse=True), values


@pytest.mark.parametrize("distance", ["l1", "mse"])
def test_cr_batch_reduction_and_lengths(cr, pair, distance):
    cr = ContrastiveRegularization(
        cr.teacher,
        layer_groups=[[1], [4]],
        weights=[0.5, 2.0],
        distance=distance,
    )
    clean, noisy = pair
    estimate = 0.5 * (clean + noisy)
    batch = torch.stack([estimate, estimate])
    per_utt = cr(
        batch,
        torch.stack([clean, clean]),
        torch.stack([noisy, noisy]),
        reduction="batch",
    )
    assert per_utt.shape == (2,)
    assert torch.allclose(per_utt[0], per_utt[1])
    # Padding the second utterance with junk does not change its value.
    padded = torch.nn.functional.pad
    junk = torch.randn(4000)
    est = torch.stack(
        [padded(estimate, (0, 4000)), torch.cat([estimate, junk])]
    )
    cln = torch.stack([padded(clean, (0, 4000)), torch.cat([clean, junk])])
    nsy = torch.stack([padded(noisy, (0, 4000)), torch.cat([noisy, -junk])])
    lengths = torch.tensor([1.0, 1.0]) * clean.shape[0] / est.shape[1]
    with_pad = cr(est, cln, nsy, length=lengths, reduction="batch")
    assert torch.allclose(with_pad[0], with_pad[1], rtol=1e-4)


def test_cr_gradient_reaches_the_estimate_only(cr, pair):
    clean, noisy = (x[None] for x in pair)
    estimate = (0.5 * (clean + noisy)).requires_grad_()
    clean.requires_grad_()
    cr(estimate, clean, noisy).backward()
    assert estimate.grad is not None and estimate.grad.abs().sum() > 0
    assert clean.grad is None


def test_cr_refuses_bad_configuration(cr, pair):
    with pytest.raises(ValueError, match="distance"):
        ContrastiveRegularization(cr.teacher, distance="cosine")
    with pytest.raises(ValueError, match="weights"):
        ContrastiveRegularization(
            cr.teacher, layer_groups=[[1]], weights=[1, 2]
        )
    too_deep = ContrastiveRegularization(cr.teacher)  # wav2vec2-base groups
    clean, noisy = (x[None] for x in pair)
    with pytest.raises(ValueError, match="needs layer"):
        too_deep(noisy, clean, noisy)


def test_spectral_loss_ignores_padding_and_reduces_per_utterance():
    loss = SpectralReconstructionLoss(compress_factor=1.0)
    target = torch.randn(2, 10, 5, 2)
    prediction = target.clone()
    prediction[1, 5:] += 10.0  # error only in the padded half
    lengths = torch.tensor([1.0, 0.5])
    assert float(loss(prediction, target, lengths)) == 0.0
    per_utt = loss(prediction, target, reduction="batch")
    assert per_utt.shape == (2,) and per_utt[0] == 0 and per_utt[1] > 0


def test_spectral_loss_weights():
    target = torch.randn(1, 4, 3, 2)
    prediction = -target  # same magnitude, opposite phase
    magnitude_only = SpectralReconstructionLoss(0.0, 1.0)
    complex_only = SpectralReconstructionLoss(1.0, 0.0)
    assert float(magnitude_only(prediction, target)) < 1e-8
    assert float(complex_only(prediction, target)) > 0


def test_stream_contrast_is_zero_for_orthogonal_streams():
    loss = StreamContrastLoss()
    relevant = torch.zeros(1, 2, 1, 3)
    irrelevant = torch.zeros(1, 2, 1, 3)
    relevant[:, 0] = 1.0
    irrelevant[:, 1] = 1.0
    assert float(loss(relevant, irrelevant)) == 0.0
    assert float(loss(relevant, relevant)) == pytest.approx(1.0)


def test_perceptual_loss_ranks_mixtures_as_pesq_does():
    clean = harmonic_speech(3 * SAMPLE_RATE)
    loss = PerceptualQualityLoss(sample_rate=SAMPLE_RATE)
    losses, scores = [], []
    for snr in (30.0, 40.0, 50.0):  # white noise on a tone: PESQ 1.1 to 2.2
        noisy, _ = mix_at_snr(clean, snr)
        losses.append(float(loss(noisy[None], clean[None])))
        scores.append(pesq(SAMPLE_RATE, clean.numpy(), noisy.numpy(), "wb"))
    assert losses == sorted(losses, reverse=True), losses
    assert scores == sorted(scores), scores
    assert float(loss(clean[None], clean[None])) < 1e-3


def test_perceptual_loss_ignores_padding_and_reduces_per_utterance(pair):
    clean, noisy = pair
    loss = PerceptualQualityLoss(sample_rate=SAMPLE_RATE)
    half = clean.shape[0] // 2
    prediction = torch.stack([noisy, clean.clone()])
    prediction[1, half:] += 0.5  # error only in the padded half
    targets = torch.stack([clean, clean])
    lengths = torch.tensor([1.0, 0.5])
    per_utt = loss(prediction, targets, lengths, reduction="batch")
    assert per_utt.shape == (2,)
    alone = loss(prediction[1:, :half], targets[1:, :half])
    assert float(per_utt[1]) == pytest.approx(float(alone))
    assert float(per_utt[1]) < 1e-3 < float(per_utt[0])
    assert float(loss(prediction, targets, lengths)) == pytest.approx(
        float(per_utt.mean())
    )


def test_perceptual_loss_gradient_reaches_the_estimate(pair):
    clean, noisy = pair
    estimate = noisy.clone()[None].requires_grad_(True)
    PerceptualQualityLoss(sample_rate=SAMPLE_RATE)(
        estimate, clean[None]
    ).backward()
    assert torch.isfinite(estimate.grad).all()
    assert estimate.grad.abs().sum() > 0
