"""A pretrained, offline teacher: the Resemblyzer speaker encoder.

The ``resemblyzer`` wheel on PyPI ships ``pretrained.pt``, the speaker
encoder of Real-Time-Voice-Cloning (GE2E loss, thousands of speakers): a
3-layer LSTM with 256 units over 40 mel bands, whose last hidden state goes
through a linear layer, a ReLU and an L2 normalisation. This module rebuilds
it in torch, mel front end included, so that gradients reach the waveform.
Only the weights file is used: the package itself (which imports librosa and
webrtcvad) is never imported, so ``pip install --no-deps resemblyzer``
suffices.

Authors
-------
speechbrain-cmcr contributors
"""

import importlib.util
from pathlib import Path

import torch
import torchaudio
from speechbrain.dataio.dataio import length_to_mask
from torch import nn

from speechbrain_cmcr.lobes.teachers import FrozenTeacher

SAMPLE_RATE = 16000
N_MELS = 40
HIDDEN_SIZE = 256
NUM_LAYERS = 3
INSTALL_HINT = "pip install --no-deps resemblyzer==0.1.4"


def find_resemblyzer_weights():
    """Path of ``pretrained.pt`` in the installed ``resemblyzer`` package,
    found without importing it.

    Returns
    -------
    pathlib.Path
        The weights file.

    Raises
    ------
    FileNotFoundError
        If the package or its weights file is missing.

    Example
    -------
    >>> find_resemblyzer_weights().name
    'pretrained.pt'
    """
    spec = importlib.util.find_spec("resemblyzer")
    folders = spec.submodule_search_locations if spec else None
    if folders:
        for folder in folders:
            path = Path(folder) / "pretrained.pt"
            if path.is_file():
                return path
    raise FileNotFoundError(
        "Resemblyzer's pretrained.pt was not found. Install the wheel, which "
        f"ships it (its dependencies are not needed): `{INSTALL_HINT}`, or "
        "pass weights_path= to ResemblyzerTeacher."
    )


def normalize_volume(wavs, lengths=None, target_dbfs=-30.0, eps=1e-8):
    """Raises quiet signals to ``target_dbfs`` of RMS over their valid
    samples and leaves louder ones alone, as Resemblyzer's
    ``normalize_volume(wav, -30, increase_only=True)`` does.

    Arguments
    ---------
    wavs : torch.Tensor
        Waveforms [B, L] in [-1, 1].
    lengths : torch.Tensor
        Relative lengths [B]; None means all full.
    target_dbfs : float
        Target RMS level in dB relative to full scale.
    eps : float
        Smallest RMS, so that silence gets a finite gain.

    Returns
    -------
    torch.Tensor
        Scaled waveforms [B, L].

    Example
    -------
    >>> wavs = torch.tensor([[0.001, -0.001], [0.5, -0.5]])
    >>> normalize_volume(wavs).round(decimals=4)
    tensor([[ 0.0316, -0.0316],
            [ 0.5000, -0.5000]])
    """
    num_samples = wavs.shape[1]
    if lengths is None:
        lengths = torch.ones(wavs.shape[0], device=wavs.device)
    valid = torch.round(lengths * num_samples).clamp(min=1)  # [B]
    mask = length_to_mask(valid, num_samples, dtype=wavs.dtype)  # [B, L]
    rms = torch.sqrt((wavs.pow(2) * mask).sum(1) / valid).clamp(min=eps)
    gain = (10 ** (target_dbfs / 20) / rms).clamp(min=1.0)  # [B]
    return wavs * gain[:, None]


def split_lstm_layers(state, num_layers=NUM_LAYERS, prefix="lstm."):
    """Builds one single-layer LSTM per layer of a stacked ``nn.LSTM``
    state dict, so that each layer's output can be read.

    Arguments
    ---------
    state : dict
        State dict holding ``{prefix}weight_ih_l{k}`` etc.
    num_layers : int
        Number of stacked layers.
    prefix : str
        Prefix of the LSTM's keys.

    Returns
    -------
    torch.nn.ModuleList
        ``num_layers`` batch-first ``nn.LSTM`` modules of one layer.

    Example
    -------
    >>> stacked = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    >>> layers = split_lstm_layers(stacked.state_dict(), 2, prefix="")
    >>> x = torch.randn(1, 5, 3)
    >>> torch.allclose(layers[1](layers[0](x)[0])[0], stacked(x)[0])
    True
    """
    layers = nn.ModuleList()
    for k in range(num_layers):
        weight_ih = state[f"{prefix}weight_ih_l{k}"]
        layer = nn.LSTM(
            weight_ih.shape[1],
            state[f"{prefix}weight_hh_l{k}"].shape[1],
            batch_first=True,
        )
        layer.load_state_dict(
            {
                f"{name}_l0": state[f"{prefix}{name}_l{k}"]
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            }
        )
        layers.append(layer)
    return layers


class ResemblyzerTeacher(FrozenTeacher):
    """Resemblyzer's pretrained speaker encoder as a frozen teacher.

    Its representations, all at 100 frames per second (10 ms hop, centred
    frames: ``L // 160 + 1`` frames for ``L`` samples at 16 kHz), are:
    index 0 the mel power spectrogram [B, T', 40] that the LSTM reads, and
    index k (1..3) the output of LSTM layer k [B, T', 256].

    The front end follows the wheel's ``preprocess_wav`` and
    ``wav_to_mel_spectrogram``: volume raised to -30 dBFS if below, then
    ``librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160,
    n_mels=40)``, i.e. a periodic Hann window of 25 ms, centred frames,
    the power spectrum (no log) and slaney-scaled, slaney-normalised mel
    filters. Frames are padded by reflection, as with the librosa of the
    encoder's training (librosa >= 0.10 pads with zeros, which changes
    the first and last two frames only). The wheel's voice-activity
    trimming of long silences is left out: it is not differentiable and
    would misalign the three signals that the regularization compares.

    Arguments
    ---------
    weights_path : str
        Resemblyzer checkpoint; None takes ``pretrained.pt`` from the
        installed ``resemblyzer`` wheel.
    target_dbfs : float
        Level to which quieter inputs are raised (the wheel's -30 dBFS);
        None feeds the input as it is.
    partial_frames : int
        The LSTM restarts from a zero state every ``partial_frames`` frames,
        as on the 160-frame (1.6 s) partial utterances it was trained on;
        None runs it over whole signals.
    pretrained : bool
        False replaces the pretrained LSTM and linear weights with PyTorch's
        random initialisation (from the global seed): a control for
        ablations asking whether CR needs a trained teacher.

    Example
    -------
    >>> teacher = ResemblyzerTeacher()
    >>> layers = teacher(torch.randn(2, 16000))
    >>> [tuple(layer.shape) for layer in layers]
    [(2, 101, 40), (2, 101, 256), (2, 101, 256), (2, 101, 256)]
    >>> embeds = teacher.embed(layers[0][:, :160])
    >>> embeds.shape, torch.allclose(embeds.norm(dim=-1), torch.ones(2))
    (torch.Size([2, 256]), True)
    """

    def __init__(
        self,
        weights_path=None,
        target_dbfs=-30.0,
        partial_frames=160,
        pretrained=True,
    ):
        super().__init__()
        if weights_path is None:
            weights_path = find_resemblyzer_weights()
        checkpoint = torch.load(
            weights_path, map_location="cpu", weights_only=True
        )
        state = checkpoint["model_state"]
        self.target_dbfs = target_dbfs
        self.partial_frames = partial_frames
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=SAMPLE_RATE * 25 // 1000,
            hop_length=SAMPLE_RATE * 10 // 1000,
            n_mels=N_MELS,
            power=2.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )
        self.lstms = split_lstm_layers(state)
        self.linear = nn.Linear(HIDDEN_SIZE, HIDDEN_SIZE)
        self.linear.load_state_dict(
            {"weight": state["linear.weight"], "bias": state["linear.bias"]}
        )
        if not pretrained:
            for module in [*self.lstms, self.linear]:
                module.reset_parameters()
        self.freeze()

    def forward(self, wavs, lengths=None):
        """Returns the mel frames and the three LSTM layer outputs of
        ``wavs`` [B, L] at 16 kHz, each [B, T', D]."""
        mels = self.features(wavs, lengths)
        return [mels] + self._lstm_outputs(mels)

    def features(self, wavs, lengths=None):
        """Mel power spectrogram [B, T', 40] of ``wavs`` [B, L], the LSTM's
        input."""
        if self.target_dbfs is not None:
            wavs = normalize_volume(wavs, lengths, self.target_dbfs)
        return self.mel(wavs).transpose(1, 2)

    def embed(self, mels):
        """Speaker embedding [B, 256] of mel frames [B, T', 40], computed as
        the wheel's ``VoiceEncoder.forward``: the L2-normalised ReLU of a
        linear layer on the last LSTM state. Meant for 160-frame partials."""
        last = self._lstm_outputs(mels)[-1][:, -1]
        embeds = torch.relu(self.linear(last))
        return embeds / embeds.norm(dim=1, keepdim=True)

    def _lstm_outputs(self, mels):
        """Outputs [B, T', 256] of each LSTM layer, restarting every
        ``partial_frames`` frames."""
        batch, num_frames, _ = mels.shape
        size = self.partial_frames or num_frames
        num_partials = -(-num_frames // size)
        x = nn.functional.pad(mels, (0, 0, 0, num_partials * size - num_frames))
        x = x.reshape(batch * num_partials, size, -1)
        outputs = []
        for lstm in self.lstms:
            x, _ = lstm(x)
            outputs.append(x.reshape(batch, num_partials * size, -1))
        return [out[:, :num_frames] for out in outputs]
