"""Behaviour of the CMCR-Net lobe: shapes, padding, checkpoints, training."""

import pytest
import torch

from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
from speechbrain_cmcr.lobes.teachers import HuggingFaceSSLTeacher
from speechbrain_cmcr.nnet.losses import (
    CMCRLoss,
    ContrastiveRegularization,
    SpectralReconstructionLoss,
    StreamContrastLoss,
)

SMALL = dict(
    n_fft=128,
    win_length=8,
    hop_length=4,
    encoder_channels=[8, 16, 16],
    num_modules=2,
    attention_dim=16,
)


def si_sdr(estimate, target):
    """Scale-invariant SDR in dB of 1-D signals."""
    target = target - target.mean()
    estimate = estimate - estimate.mean()
    scale = (estimate @ target) / (target @ target)
    projection = scale * target
    noise = estimate - projection
    return 10 * torch.log10(projection.pow(2).sum() / noise.pow(2).sum())


@pytest.fixture(scope="module")
def default_model():
    torch.manual_seed(0)
    return CMCRNet().eval()


@pytest.mark.parametrize(
    "num_samples", [1, 2, 255, 256, 257, 1001, 8001, 16000]
)
def test_output_length_equals_input_length(default_model, num_samples):
    noisy = torch.randn(2, num_samples)
    with torch.no_grad():
        out = default_model(noisy)
    assert out.enhanced_wav.shape == noisy.shape
    assert out.noise_wav.shape == noisy.shape
    assert torch.isfinite(out.enhanced_wav).all()
    assert default_model.enhance(noisy).shape == noisy.shape


@pytest.mark.parametrize("axis", ["frequency", "time"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("output", ["mask", "mapping"])
def test_padded_batch_matches_each_signal_alone(axis, causal, output):
    torch.manual_seed(0)
    model = CMCRNet(
        attention_axis=axis, causal=causal, output=output, **SMALL
    ).eval()
    lengths_samples = [9000, 5003, 700]
    batch = torch.zeros(3, max(lengths_samples))
    for row, n in enumerate(lengths_samples):
        batch[row, :n] = torch.randn(n)
    lengths = torch.tensor(lengths_samples) / max(lengths_samples)
    with torch.no_grad():
        together = model(batch, lengths)
        for row, n in enumerate(lengths_samples):
            alone = model(batch[row : row + 1, :n])
            assert torch.allclose(
                together.enhanced_wav[row, :n], alone.enhanced_wav[0], atol=1e-4
            )
            assert torch.allclose(
                together.noise_wav[row, :n], alone.noise_wav[0], atol=1e-4
            )
            assert together.enhanced_wav[row, n:].abs().sum() == 0


def test_causal_convolutions_ignore_the_future():
    """``causal=True`` makes the convolutions causal; the attention of the
    collaboration modules stays global, so check the convolutional path."""
    torch.manual_seed(0)
    model = CMCRNet(causal=True, **{**SMALL, "num_modules": 0}).eval()
    noisy = torch.randn(1, 8000)
    changed = noisy.clone()
    changed[:, 6000:] = torch.randn(1, 2000)
    with torch.no_grad():
        a, b = model.enhance(noisy), model.enhance(changed)
    n_fft = SMALL["n_fft"]
    assert torch.allclose(a[:, : 6000 - n_fft], b[:, : 6000 - n_fft], atol=1e-6)
    assert not torch.allclose(a[:, 6000:], b[:, 6000:])


def test_checkpoint_round_trip_and_config_check(tmp_path):
    model = CMCRNet(**SMALL)
    path = tmp_path / "model.ckpt"
    torch.save(model.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert state["_extra_state"]["config"]["encoder_channels"] == [8, 16, 16]
    again = CMCRNet(**SMALL)
    again.load_state_dict(state)
    other = CMCRNet(**{**SMALL, "output": "mapping"})
    with pytest.raises(ValueError, match="output"):
        other.load_state_dict(state)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="attention_axis"):
        CMCRNet(attention_axis="channels")
    with pytest.raises(ValueError, match="output"):
        CMCRNet(output="magnitude")
    with pytest.raises(ValueError, match="too small"):
        CMCRNet(n_fft=16, win_length=1, hop_length=0.5)


def _objective(tiny_teacher_dir):
    teacher = HuggingFaceSSLTeacher(tiny_teacher_dir)
    cr = ContrastiveRegularization(teacher, layer_groups=[[1, 2], [3, 4]])
    return CMCRLoss(
        SpectralReconstructionLoss(),
        noise_weight=1.0,
        contrastive=cr,
        cr_weight=0.1,
        stream_contrast=StreamContrastLoss(),
        stream_weight=0.1,
    )


def test_every_parameter_gets_a_gradient_and_the_teacher_none(
    tiny_teacher_dir, pair
):
    torch.manual_seed(0)
    model = CMCRNet(**SMALL)
    objective = _objective(tiny_teacher_dir)
    modules = torch.nn.ModuleDict({"model": model, "objective": objective})
    modules.train()
    teacher = objective.contrastive.teacher
    assert not teacher.training
    clean, noisy = pair
    clean = torch.stack([clean, clean.roll(4000)])
    noisy = torch.stack([noisy, noisy.roll(4000)])
    lengths = torch.tensor([1.0, 0.8])
    out = model(noisy, lengths)
    terms = objective(out, clean, noisy, model, lengths)
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["cr"] > 0 and terms["stream"] > 0
    terms["total"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name
    for param in teacher.parameters():
        assert not param.requires_grad
        assert param.grad is None
    assert list(objective.state_dict()) == []


def test_small_model_overfits_one_pair(tiny_teacher_dir, pair):
    torch.manual_seed(0)
    model = CMCRNet(**SMALL)
    objective = _objective(tiny_teacher_dir)
    clean, noisy = pair
    clean, noisy = clean[None], noisy[None]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(150):
        optimizer.zero_grad()
        out = model(noisy)
        objective(out, clean, noisy, model)["total"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        enhanced = model.enhance(noisy)[0]
    before = si_sdr(noisy[0], clean[0])
    after = si_sdr(enhanced, clean[0])
    assert after > before + 6.0, (float(before), float(after))
