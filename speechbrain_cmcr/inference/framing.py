"""CMCR-Net's STFT and iSTFT in NumPy alone, offline and as a stream of
blocks: what the PyTorch :class:`~speechbrain_cmcr.inference.streaming.
StreamingEnhancer` and the onnxruntime runner (``speechbrain_cmcr.
onnx_runner``, which must not import torch) share.

The transforms are those of :class:`~speechbrain_cmcr.lobes.models.cmcr_net.
CMCRNet`: ``torch.stft``/``torch.istft`` with ``center=True`` and zero
padding, on a signal padded with zeros to whole hops; spectra are float32
``[..., F, 2]`` (real, imaginary), SpeechBrain's layout.

Authors
-------
speechbrain-cmcr contributors
"""

import numpy as np


def padded_window(window, n_fft):
    """``window`` centred in ``n_fft`` samples with zeros around it, as
    ``torch.stft`` pads a window shorter than the FFT.

    Arguments
    ---------
    window : numpy.ndarray
        The window, ``[win_length]``.
    n_fft : int
        FFT size, at least ``win_length``.

    Returns
    -------
    numpy.ndarray
        float32 ``[n_fft]``.

    Example
    -------
    >>> padded_window(np.ones(2), 4)
    array([0., 1., 1., 0.], dtype=float32)
    """
    left = (n_fft - len(window)) // 2
    right = n_fft - len(window) - left
    return np.pad(np.asarray(window, np.float32), (left, right))


def stft(signal, window, hop_length):
    """Spectrum of a whole signal, as ``CMCRNet.spectrum`` computes it.

    Arguments
    ---------
    signal : numpy.ndarray
        Samples ``[L]``.
    window : numpy.ndarray
        Window ``[n_fft]`` (see :func:`padded_window`).
    hop_length : int
        Hop in samples.

    Returns
    -------
    numpy.ndarray
        float32 ``[T, F, 2]``, ``T = ceil(L / hop) + 1``.

    Example
    -------
    >>> stft(np.ones(10), np.hanning(8), 4).shape
    (4, 5, 2)
    """
    n_fft = len(window)
    signal = np.asarray(signal, np.float32)
    padded = np.pad(signal, (0, -len(signal) % hop_length))
    padded = np.pad(padded, n_fft // 2)
    starts = np.arange(0, len(padded) - n_fft + 1, hop_length)
    frames = padded[starts[:, None] + np.arange(n_fft)]  # [T, n_fft]
    spectrum = np.fft.rfft(frames * np.float32(window), axis=-1)  # [T, F]
    return _real_pairs(spectrum)


def istft(spectrum, window, hop_length, length):
    """Signal of a whole spectrum, as ``CMCRNet`` resynthesises it.

    Arguments
    ---------
    spectrum : numpy.ndarray
        ``[T, F, 2]``, as from :func:`stft`.
    window : numpy.ndarray
        The analysis window ``[n_fft]``.
    hop_length : int
        Hop in samples.
    length : int
        Number of samples to return (the analysed signal's length).

    Returns
    -------
    numpy.ndarray
        float32 ``[length]``.

    Example
    -------
    >>> signal = np.random.default_rng(0).standard_normal(100)
    >>> window = padded_window(np.hamming(16), 16)
    >>> again = istft(stft(signal, window, 8), window, 8, 100)
    >>> bool(np.allclose(again, signal, atol=1e-5))
    True
    """
    n_fft = len(window)
    frames = _synthesis_frames(spectrum, window)  # [T, n_fft]
    total = (len(frames) - 1) * hop_length + n_fft
    summed = np.zeros(total, np.float32)
    envelope = np.zeros(total, np.float32)
    squared = np.float32(window) ** 2
    for index, frame in enumerate(frames):
        start = index * hop_length
        summed[start : start + n_fft] += frame
        envelope[start : start + n_fft] += squared
    keep = slice(n_fft // 2, n_fft // 2 + length)
    return summed[keep] / envelope[keep]


class SpectralStream:
    """Runs a frame-by-frame spectral processor on an audio stream given in
    blocks of any size, with the transforms of :func:`stft` and
    :func:`istft`.

    Each call returns as many samples as it gets, the enhanced signal
    delayed by a fixed ``latency`` of ``n_fft - 1`` samples (zeros first).
    Why that much: a frame is centred on its frame time, so it can be
    analysed once the ``n_fft / 2`` samples after its centre have arrived,
    and an output sample is final once the last frame that overlaps it has
    been overlap-added, up to ``n_fft - 1`` samples after the sample; a
    block that ends between hops waits for the rest of its hop. With
    ``n_fft = 2 hop`` (CMCR-Net's 512 / 256), the first sample of every hop
    waits ``n_fft - 1`` samples and the last ``hop``; the stream holds all
    at the longest wait, so that the delay is the same for every sample and
    every block size. A processor that looks ahead adds to this; a causal
    CMCRNet does not.

    The state between calls is explicit: the input samples not yet framed,
    the overlap-add sums of the signal and of the squared window from the
    current output position on, the processed samples not yet returned, and
    the numbers of samples received and frames processed (besides the
    processor's own state). :meth:`flush` ends the stream as the offline
    transforms end a signal, so that the whole output is the offline one.

    Arguments
    ---------
    process : callable
        Maps the next noisy frame, float32 ``[F, 2]``, to its enhanced frame
        ``[F, 2]``; called once per hop, in order.
    window : numpy.ndarray
        Analysis and synthesis window ``[n_fft]`` (see
        :func:`padded_window`).
    hop_length : int
        Hop in samples.

    Example
    -------
    >>> window = padded_window(np.hamming(8), 8)
    >>> stream = SpectralStream(lambda frame: frame, window, 4)
    >>> stream.latency
    7
    >>> signal = np.random.default_rng(0).standard_normal(50)
    >>> out = np.concatenate([stream(signal[:13]), stream(signal[13:]),
    ...                       stream.flush()])
    >>> len(out), bool(np.allclose(out[7:], signal, atol=1e-5))
    (57, True)
    """

    def __init__(self, process, window, hop_length):
        self.process = process
        self.window = np.asarray(window, np.float32)
        self.hop_length = hop_length
        self.n_fft = len(self.window)
        self.latency = self.n_fft - 1
        # Zeros before the signal: the first frame is centred on sample 0.
        self._input = np.zeros(self.n_fft // 2, np.float32)
        # Overlap-add sums from the start of the next frame on.
        self._summed = np.zeros(self.n_fft, np.float32)
        self._envelope = np.zeros(self.n_fft, np.float32)
        self._squared = self.window**2
        # Synthesised samples of the centre padding, dropped.
        self._to_drop = self.n_fft // 2
        # Processed samples not yet returned; the first ones are the delay.
        self._output = np.zeros(self.latency, np.float32)
        self._received = 0
        self._frames = 0
        self._ended = False

    def __call__(self, block):
        """Takes the next block of samples ``[N]`` (any N >= 0) and returns
        the next N enhanced samples (float32)."""
        if self._ended:
            raise RuntimeError("the stream was flushed: start a new one")
        block = np.asarray(block, np.float32).reshape(-1)
        self._received += len(block)
        self._input = np.concatenate([self._input, block])
        ready = [self._output]
        while len(self._input) >= self.n_fft:
            ready.append(self._next_hop())
        ready = np.concatenate(ready)
        self._output = ready[len(block) :]
        return ready[: len(block)]

    def flush(self):
        """Ends the stream: returns its last ``latency`` enhanced samples.
        As offline, the signal is padded with zeros to whole hops, framed up
        to its end and no further."""
        if self._ended:
            raise RuntimeError("the stream was flushed already")
        self._ended = True
        ready = [self._output]
        last_frame = -(-self._received // self.hop_length)  # ceil
        while self._frames <= last_frame:
            missing = max(self.n_fft - len(self._input), 0)
            self._input = np.pad(self._input, (0, missing))
            ready.append(self._next_hop())
        # The output from the next frame's start to the signal's end has all
        # its frames; the start is before sample 0 in a very short signal.
        origin = self._frames * self.hop_length - self.n_fft // 2
        rest = slice(max(-origin, 0), max(self._received - origin, 0))
        ready.append(self._summed[rest] / self._envelope[rest])
        return np.concatenate(ready)[: self.latency]

    def _next_hop(self):
        """Processes the frame at the start of the input and moves on by a
        hop; returns the samples it completes (a hop, less any centre
        padding)."""
        frame = self._input[: self.n_fft]
        self._input = self._input[self.hop_length :]
        self._frames += 1
        spectrum = _real_pairs(np.fft.rfft(frame * self.window))  # [F, 2]
        synthesised = _synthesis_frames(self.process(spectrum), self.window)
        self._summed += synthesised
        self._envelope += self._squared
        hop = self.hop_length
        dropped = min(self._to_drop, hop)
        self._to_drop -= dropped
        done = self._summed[dropped:hop] / self._envelope[dropped:hop]
        zeros = np.zeros(hop, np.float32)
        self._summed = np.concatenate([self._summed[hop:], zeros])
        self._envelope = np.concatenate([self._envelope[hop:], zeros])
        return done


def _real_pairs(spectrum):
    """Complex ``[..., F]`` to float32 ``[..., F, 2]``."""
    return np.stack([spectrum.real, spectrum.imag], axis=-1).astype(np.float32)


def _synthesis_frames(spectrum, window):
    """Windowed inverse FFT ``[..., n_fft]`` of ``[..., F, 2]`` frames."""
    complex_spectrum = spectrum[..., 0] + 1j * spectrum[..., 1]
    frames = np.fft.irfft(complex_spectrum, n=len(window), axis=-1)
    return (frames * window).astype(np.float32)
