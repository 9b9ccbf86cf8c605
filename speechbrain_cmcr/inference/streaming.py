"""Real-time enhancement with a causal CMCR-Net: audio blocks of any size
in, enhanced audio out, with a fixed latency of one STFT window.

:class:`StreamingEnhancer` frames the incoming samples
(:class:`~speechbrain_cmcr.inference.framing.SpectralStream`) and runs
:meth:`CMCRNet.stream <speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet.stream>`
on one frame per hop, carrying the model's
:class:`~speechbrain_cmcr.lobes.models.cmcr_net.StreamState` (the history
frames of the convolutions and the running sums of the collaboration
modules) from frame to frame. Its output is the offline output of the same
model (``CMCRNet.enhance``), delayed by ``latency_samples``: ``n_fft - 1``
samples, 511 (31.9 ms) for the default 512-sample window and 256-sample hop
at 16 kHz (see ``SpectralStream`` for why). The model looks no further
ahead.

Authors
-------
speechbrain-cmcr contributors
"""

import torch

from speechbrain_cmcr.inference.framing import SpectralStream, padded_window


class StreamingEnhancer:
    """Enhances one audio stream block by block with a causal CMCRNet.

    Arguments
    ---------
    model : speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet
        A causal model (``causal=True``, ``attention_axis="frequency"``); it
        is put in eval mode (BatchNorm folded into the convolutions).

    Example
    -------
    >>> from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8, causal=True)
    >>> enhancer = StreamingEnhancer(model)
    >>> enhancer.latency_samples, enhancer.latency_ms
    (63, 3.9375)
    >>> noisy = torch.randn(1000)
    >>> streamed = torch.cat([enhancer(noisy[:300]), enhancer(noisy[300:]),
    ...                       enhancer.flush()])
    >>> offline = model.enhance(noisy[None])[0]
    >>> torch.allclose(streamed[63:], offline, atol=1e-5)
    True
    """

    def __init__(self, model):
        config = model.config
        if not config["causal"] or config["attention_axis"] != "frequency":
            raise ValueError(
                "streaming needs a causal CMCRNet (causal=True) with "
                'attention_axis="frequency"; this one has '
                f"causal={config['causal']}, "
                f"attention_axis={config['attention_axis']!r}"
            )
        self.model = model.eval()
        self.sample_rate = model.sample_rate
        self.state = model.stream_state()
        window = padded_window(model.stft.window.numpy(), config["n_fft"])
        self.frames = SpectralStream(self._process, window, model.hop_samples)

    @classmethod
    def from_hparams(cls, source, **kwargs):
        """Loads a model folder (or Hub repository) of a causal model, as
        ``EnhanceSpeech.from_hparams(source=source, **kwargs)`` does.

        Arguments
        ---------
        source : str
            Model folder or Hugging Face Hub id.
        **kwargs
            Passed on to ``EnhanceSpeech.from_hparams`` (``savedir``...).

        Returns
        -------
        StreamingEnhancer
            A new stream with that model.
        """
        from speechbrain_cmcr.inference.enhancement import EnhanceSpeech

        enhancer = EnhanceSpeech.from_hparams(source=source, **kwargs)
        return cls(enhancer.mods.enhance_model)

    @property
    def latency_samples(self):
        """Fixed delay of the output, in samples: ``n_fft - 1``."""
        return self.frames.latency

    @property
    def latency_ms(self):
        """Fixed delay of the output, in milliseconds."""
        return 1000 * self.latency_samples / self.sample_rate

    def __call__(self, block):
        """Takes the next samples ``[N]`` (any N >= 0, at the model's sample
        rate; a tensor or an array) and returns the next N enhanced samples,
        ``latency_samples`` behind the input (zeros at first)."""
        if isinstance(block, torch.Tensor):
            block = block.detach().cpu().numpy()
        return torch.from_numpy(self.frames(block))

    def flush(self):
        """Ends the stream: returns the last ``latency_samples`` enhanced
        samples. Start a new enhancer for the next stream."""
        return torch.from_numpy(self.frames.flush())

    def _process(self, frame):
        """Enhances the next STFT frame [F, 2] (NumPy in and out)."""
        noisy = torch.from_numpy(frame)[None, None]  # [1, 1, F, 2]
        with torch.inference_mode():
            enhanced, self.state = self.model.stream(noisy, self.state)
        return enhanced[0, 0].numpy()
