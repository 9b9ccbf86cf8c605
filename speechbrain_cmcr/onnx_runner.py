"""Enhances audio with an exported CMCR-Net ONNX graph
(``speechbrain_cmcr.onnx_export``), with NumPy, soundfile and onnxruntime
only: this module never imports PyTorch.

Usage::

    python -m speechbrain_cmcr.onnx_runner <graph.onnx> <noisy.wav> \\
        <enhanced.wav> [--threads N]

A streaming graph (``cmcr_stream.onnx``) is run frame by frame, as in real
time, and its output is aligned back on the input (the stream's latency,
``n_fft - 1`` samples, removed); an offline graph (``cmcr_offline.onnx``)
gets the whole spectrum at once. The input must be at the model's sample
rate (nothing here resamples); channels are averaged to mono, and the
output is written as 32-bit float, so nothing is clipped.

Authors
-------
speechbrain-cmcr contributors
"""

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime
import soundfile as sf
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidGraph,
    InvalidProtobuf,
)

from speechbrain_cmcr.inference.framing import SpectralStream, istft, stft


class OnnxEnhancer:
    """An exported CMCR-Net graph in onnxruntime.

    Arguments
    ---------
    path : str or os.PathLike
        A ``.onnx`` file written by ``speechbrain_cmcr.onnx_export``.
    threads : int
        Threads of onnxruntime within an operator (0: its default).

    Example
    -------
    >>> from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    >>> from speechbrain_cmcr.onnx_export import export_streaming_step
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8, causal=True)
    >>> path = getfixture("tmp_path") / "cmcr_stream.onnx"
    >>> enhancer = OnnxEnhancer(export_streaming_step(model, path))
    >>> enhancer.graph, enhancer.latency_samples
    ('stream', 63)
    >>> stream = enhancer.stream()
    >>> noisy = np.random.default_rng(0).standard_normal(500)
    >>> out = np.concatenate([stream(noisy[:123]), stream(noisy[123:])])
    >>> out.shape
    (500,)
    """

    def __init__(self, path, threads=0):
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "no such ONNX graph", str(path))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except (Fail, InvalidGraph, InvalidProtobuf) as error:
            raise ValueError(f"{path}: not an ONNX graph ({error})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "graph" not in metadata:
            raise ValueError(
                f"{path}: not a CMCR-Net graph (exported by "
                "speechbrain_cmcr.onnx_export)"
            )
        self.graph = metadata["graph"]
        self.sample_rate = int(metadata["sample_rate"])
        self.hop_length = int(metadata["hop_length"])
        self.window = np.asarray(json.loads(metadata["window"]), np.float32)
        self.config = json.loads(metadata["config"])
        self.latency_samples = (
            len(self.window) - 1 if self.graph == "stream" else None
        )

    def stream(self):
        """A new stream (streaming graph only): call it with blocks of any
        size, then ``flush()``, as
        :class:`~speechbrain_cmcr.inference.framing.SpectralStream`."""
        if self.graph != "stream":
            raise ValueError("an offline graph does not stream")
        inputs = self.session.get_inputs()[1:]  # after noisy_spec
        state = [np.zeros(node.shape, np.float32) for node in inputs]
        names = [node.name for node in inputs]

        def process(frame):
            feeds = dict(zip(names, state), noisy_spec=frame[None, None])
            outputs = self.session.run(None, feeds)
            state[:] = outputs[1:]
            return outputs[0][0, 0]

        return SpectralStream(process, self.window, self.hop_length)

    def enhance(self, signal):
        """Enhances a whole signal ``[L]`` (float, at ``sample_rate``);
        returns float32 ``[L]``, aligned with the input."""
        signal = np.asarray(signal, np.float32)
        if self.graph == "stream":
            stream = self.stream()
            delayed = np.concatenate([stream(signal), stream.flush()])
            return delayed[self.latency_samples :]
        spectrum = stft(signal, self.window, self.hop_length)  # [T, F, 2]
        (enhanced,) = self.session.run(None, {"noisy_spec": spectrum[None]})
        return istft(enhanced[0], self.window, self.hop_length, len(signal))

    def enhance_file(self, noisy_path, enhanced_path):
        """Enhances the audio file ``noisy_path`` into ``enhanced_path``
        (float wav).

        Arguments
        ---------
        noisy_path : str or os.PathLike
            Audio file at the model's sample rate.
        enhanced_path : str or os.PathLike
            Where to write the enhanced audio.
        """
        if not os.path.isfile(noisy_path):
            raise FileNotFoundError(2, "no such audio file", str(noisy_path))
        try:
            audio, rate = sf.read(
                str(noisy_path), dtype="float32", always_2d=True
            )
        except sf.LibsndfileError as error:
            message = f"{noisy_path}: not readable audio ({error})"
            raise ValueError(message) from None
        if not audio.size:
            raise ValueError(f"{noisy_path}: no samples")
        if not np.isfinite(audio).all():
            raise ValueError(f"{noisy_path}: holds NaN or infinite samples")
        if rate != self.sample_rate:
            raise ValueError(
                f"{noisy_path}: {rate} Hz, the model takes "
                f"{self.sample_rate} Hz (resample it first)"
            )
        enhanced = self.enhance(audio.mean(axis=1))
        sf.write(str(enhanced_path), enhanced, rate, subtype="FLOAT")


def main(argv=None):
    """Command line: ``graph.onnx noisy.wav enhanced.wav [--threads N]``.

    Arguments
    ---------
    argv : list of str
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success.
    """
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_cmcr.onnx_runner",
        description="Enhance an audio file with an exported CMCR-Net ONNX "
        "graph (no PyTorch needed).",
    )
    parser.add_argument("graph", help="cmcr_stream.onnx or cmcr_offline.onnx")
    parser.add_argument("noisy", help="input audio file")
    parser.add_argument("enhanced", help="output wav file")
    parser.add_argument(
        "--threads", type=int, default=0, help="onnxruntime threads"
    )
    args = parser.parse_args(argv)
    try:
        enhancer = OnnxEnhancer(args.graph, threads=args.threads)
        enhancer.enhance_file(args.noisy, args.enhanced)
    except (OSError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
