"""Behaviour of the CMCR-Net lobe: shapes, padding, checkpoints, training."""

from pathlib import Path

import pytest
import torch
from conftest import TINY, harmonic_speech, mix_at_snr

from speechbrain_cmcr import EnhanceSpeech
from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet, conv_norm
from speechbrain_cmcr.lobes.teachers import HuggingFaceSSLTeacher
from speechbrain_cmcr.nnet.losses import (
    CMCRLoss,
    ContrastiveRegularization,
    SpectralReconstructionLoss,
    StreamContrastLoss,
)

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "cmcr-dns-small"
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


@pytest.mark.parametrize("axis", ["frequency", "time"])
@pytest.mark.parametrize("output", ["mask", "mapping"])
def test_causal_model_ignores_the_future(axis, output):
    """With ``causal=True``, changing the input from sample s on changes no
    output sample before s - (n_fft - 1), the STFT's look-ahead, in either
    output; the sample right after that bound changes, so the stated
    look-ahead is the whole of it."""
    torch.manual_seed(0)
    model = CMCRNet(
        causal=True, attention_axis=axis, output=output, **SMALL
    ).eval()
    noisy = torch.randn(1, 8000)
    changed = noisy.clone()
    start = 6001
    changed[:, start:] = torch.randn(1, 8000 - start)
    with torch.no_grad():
        before, after = model(noisy), model(changed)
    bound = start - (SMALL["n_fft"] - 1)
    for a, b in [
        (before.enhanced_wav, after.enhanced_wav),
        (before.noise_wav, after.noise_wav),
    ]:
        assert torch.equal(a[:, :bound], b[:, :bound])
        assert not torch.allclose(a[:, bound:start], b[:, bound:start])


def test_offline_model_sees_the_future():
    """The paper model (``causal=False``) attends over the whole input: the
    same change reaches back to the start (what the causal test rules
    out)."""
    torch.manual_seed(0)
    model = CMCRNet(**SMALL).eval()
    noisy = torch.randn(1, 8000)
    changed = noisy.clone()
    changed[:, 6001:] = torch.randn(1, 1999)
    with torch.no_grad():
        a, b = model.enhance(noisy), model.enhance(changed)
    assert not torch.allclose(a[:, :1000], b[:, :1000], atol=1e-6)


def test_paper_model_outputs_are_unchanged():
    """The shipped (offline) model gives the output it gave when it was
    committed. The causal model's code was checked bit-identical to the
    earlier code on the previous shipped model; these checksums, of the
    current one, keep the offline path from drifting. (The weights shipped
    before 2026-12-02 still give their checksums, -0.4165567 and
    935.196411, with the code that added ``mask_bound``; those shipped
    from 2026-12-02 to 2026-12-06 give 0.1114160 and 990.692444.)"""
    enhancer = EnhanceSpeech.from_hparams(source=str(SHIPPED))
    model = enhancer.mods.enhance_model
    assert model.config["causal"] is False
    noisy, _ = mix_at_snr(harmonic_speech(16000, seed=3), 5.0, seed=4)
    with torch.no_grad():
        enhanced = model.enhance(noisy[None])[0]
    assert enhanced.sum().item() == pytest.approx(0.1874879, abs=2e-5)
    assert enhanced.abs().sum().item() == pytest.approx(960.437256, rel=1e-6)
    expected = torch.tensor([-0.0056579062, -0.0021879249, 0.0014851566])
    assert torch.allclose(enhanced[[100, 5000, 12345]], expected, atol=1e-6)


def test_paper_attention_is_the_earlier_formula():
    """For ``causal=False``, the contrastive attention's similarities and
    the interactive attention's descriptor are the global means of the
    earlier code, bit for bit (the formulas written out here)."""
    torch.manual_seed(0)
    model = CMCRNet(**{**SMALL, "num_modules": 1}).eval()
    module = model.collaboration[0]
    x = torch.randn(2, 16, 7, 9)
    mask = torch.ones(2, 9)
    mask[1, 6:] = 0
    contrastive = module.contrastive
    with torch.no_grad():
        relevant, irrelevant, total = contrastive(x, mask)
        flat = x.reshape(2, -1, 9)
        q, k, v = (
            conv_norm(flat, *embed) * mask[:, None]
            for embed in (contrastive.query, contrastive.key, contrastive.value)
        )
        gate = contrastive.gate(
            contrastive.gate_query(q) + contrastive.gate_key(k)
        )
        z = torch.sigmoid(gate)
        valid = mask.sum(dim=1).clamp(min=1)[:, None, None]
        for query, stream in [(z * q, relevant), ((1 - z) * q, irrelevant)]:
            scores = query @ k.transpose(1, 2) / valid
            attended = torch.softmax(scores, dim=-1) @ v
            out = conv_norm(attended, *contrastive.out) * mask[:, None]
            assert torch.equal(out.reshape(x.shape), stream)
        weight_r, weight_i, fusion_total = module.interactive.weights(
            relevant, irrelevant, mask
        )
        fusion = module.interactive
        count = (mask.sum(dim=1) * 7).clamp(min=1)[:, None]
        summary = (relevant + irrelevant).sum(dim=(2, 3)) / count
        hidden = fusion.trunk(summary)
        logits = torch.stack(
            [fusion.relevant_head(hidden), fusion.irrelevant_head(hidden)]
        )
        weights = torch.softmax(logits, dim=0)[..., None, None]
    assert total is None and fusion_total is None
    assert torch.equal(weight_r, weights[0])
    assert torch.equal(weight_i, weights[1])


def test_causal_statistics_are_running_means_ending_in_the_global_one():
    """For ``causal=True``, frame t's similarities are the mean of q k^T
    over frames up to t: at the last frame, the offline model's."""
    torch.manual_seed(0)
    offline = CMCRNet(**{**SMALL, "num_modules": 1}).eval()
    causal = CMCRNet(**{**SMALL, "num_modules": 1, "causal": True}).eval()
    causal.load_state_dict(
        {
            key: value
            for key, value in offline.state_dict().items()
            if key != "_extra_state"
        },
        strict=False,
    )
    x, mask = torch.randn(1, 16, 7, 9), torch.ones(1, 9)
    with torch.no_grad():
        r_off, i_off, _ = offline.collaboration[0].contrastive(x, mask)
        r_causal, i_causal, _ = causal.collaboration[0].contrastive(x, mask)
        first_r, first_i, _ = causal.collaboration[0].contrastive(
            x[..., :1], mask[:, :1]
        )
    # Last frame: the whole input is its past.
    assert torch.allclose(r_off[..., -1], r_causal[..., -1], atol=1e-5)
    assert torch.allclose(i_off[..., -1], i_causal[..., -1], atol=1e-5)
    # First frame: only itself.
    assert torch.allclose(r_causal[..., :1], first_r, atol=1e-6)
    assert not torch.allclose(r_off[..., :1], first_r, atol=1e-3)


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


@pytest.mark.parametrize("causal", [False, True])
def test_every_parameter_gets_a_gradient_and_the_teacher_none(
    tiny_teacher_dir, pair, causal
):
    torch.manual_seed(0)
    model = CMCRNet(causal=causal, **SMALL)
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


def level_model(**overrides):
    torch.manual_seed(0)
    return CMCRNet(**TINY, **overrides).eval()


def test_level_norm_makes_the_output_follow_the_input_level():
    """With level_norm the output scales exactly with the input, padded
    batch items included; without it the network's nonlinearities see
    the level."""
    noisy = torch.randn(2, 1000)
    lengths = torch.tensor([1.0, 0.6])
    normalised, plain = level_model(level_norm=True), level_model()
    with torch.no_grad():
        for gain in (0.01, 30.0):
            quiet = normalised(gain * noisy, lengths).enhanced_wav / gain
            loud = normalised(noisy, lengths).enhanced_wav
            torch.testing.assert_close(quiet, loud, rtol=1e-4, atol=1e-5)
        spec = normalised.spectrum(noisy)
        torch.testing.assert_close(
            normalised.enhance_spectrum(0.1 * spec) / 0.1,
            normalised.enhance_spectrum(spec),
            rtol=1e-4,
            atol=1e-5,
        )
        changed = plain(30.0 * noisy, lengths).enhanced_wav / 30.0
        assert not torch.allclose(changed, plain(noisy, lengths).enhanced_wav)
        silent = normalised.enhance(torch.zeros(1, 500))
    assert torch.equal(silent, torch.zeros_like(silent))


def test_level_norm_is_refused_for_a_causal_model():
    with pytest.raises(ValueError, match="causal model cannot"):
        level_model(level_norm=True, causal=True)


def test_checkpoints_from_before_level_norm_still_load():
    state = level_model().state_dict()
    del state["_extra_state"]["config"]["level_norm"]
    model = level_model()
    model.load_state_dict(state)
    with pytest.raises(ValueError, match="level_norm"):
        level_model(level_norm=True).load_state_dict(state)


def test_mask_bound_caps_every_bin_and_starts_as_a_pass_through():
    """A bounded mask never scales a bin by more than its bound, however
    large the decoder's output, and the untrained model passes the input
    through as the unbounded one does."""
    noisy = torch.randn(1, 1000)
    bounded, plain = level_model(mask_bound=1.5), level_model()

    def gains(model):
        """|output| / |input| per bin, [1, T, F]."""
        with torch.no_grad():
            spec = model.spectrum(noisy)  # [1, T, F, 2]
            enhanced = model.enhance_spectrum(spec)
        return enhanced.norm(dim=-1) / spec.norm(dim=-1)

    for model in (bounded, plain):
        assert 0.95 < gains(model).median() < 1.05
        with torch.no_grad():
            model.speech_decoder.blocks[-1].conv.bias.fill_(10.0)
    ratio, unbounded = gains(bounded), gains(plain)
    assert ratio.max() <= 1.5 * (1 + 1e-5)
    assert ratio.min() > 1.49  # saturated
    assert unbounded.min() > 10.0


@pytest.mark.parametrize(
    "options", [{"mask_bound": 1.0}, {"mask_bound": 2.0, "output": "mapping"}]
)
def test_mask_bound_needs_a_mask_and_a_bound_above_one(options):
    with pytest.raises(ValueError, match="mask_bound needs output='mask'"):
        level_model(**options)


def test_checkpoints_from_before_mask_bound_load_as_unbounded():
    state = level_model().state_dict()
    del state["_extra_state"]["config"]["mask_bound"]
    level_model().load_state_dict(state)
    with pytest.raises(ValueError, match="mask_bound"):
        level_model(mask_bound=1.5).load_state_dict(state)


def test_cr_warmup_phases_cr_in_over_the_first_steps(tiny_teacher_dir, pair):
    torch.manual_seed(0)
    model = CMCRNet(**SMALL)
    objective = _objective(tiny_teacher_dir)
    objective.cr_warmup_steps = 10
    clean, noisy = pair[0][None], pair[1][None]
    out = model(noisy)

    def cr_part(step):
        terms = objective(out, clean, noisy, model, step=step)
        rest = terms["speech"] + terms["noise"] + 0.1 * terms["stream"]
        return terms["cr"].detach(), (terms["total"] - rest).detach()

    cr, weighted = cr_part(0)
    assert cr == 0 and weighted == 0  # the teacher is not even run
    for step, ramp in [(5, 0.5), (10, 1.0), (40, 1.0), (None, 1.0)]:
        cr, weighted = cr_part(step)
        assert cr > 0
        assert float(weighted) == pytest.approx(0.1 * ramp * float(cr))
    with pytest.raises(ValueError, match="cr_warmup_steps"):
        CMCRLoss(SpectralReconstructionLoss(), cr_warmup_steps=-1)
