"""Exports CMCR-Net to ONNX, for inference without PyTorch
(``speechbrain_cmcr.onnx_runner`` runs the graphs with NumPy and
onnxruntime).

Two graphs, both on spectra (the STFT and iSTFT, in NumPy, stay outside):

- ``cmcr_stream.onnx`` (causal models): one frame in, one frame out, the
  state as explicit inputs and outputs. Inputs: ``noisy_spec``
  ``[1, 1, F, 2]`` and the :class:`~speechbrain_cmcr.lobes.models.cmcr_net.
  StreamState` tensors (``frames``, ``encoder_<i>``, ``attention_<i>``,
  ``fusion_<i>``, ``decoder_<i>``); outputs: ``enhanced_spec`` and the state
  after the frame, in the same order, each named ``<input>_next``. The state
  starts at zeros (every input's shape is fixed).
- ``cmcr_offline.onnx`` (any model): ``CMCRNet.enhance_spectrum``, a whole
  spectrum ``noisy_spec`` ``[B, T, F, 2]`` (T free) to ``enhanced_spec``.

Each graph's metadata says how to frame the audio: ``graph`` ("stream" or
"offline"), ``sample_rate``, ``hop_length`` (samples), ``window`` (the
``n_fft`` values of the analysis window, JSON) and ``config`` (the model's
constructor arguments, JSON).

The graphs are written by PyTorch's TorchScript-based exporter (opset 17);
the newer exporter would need the onnxscript package.

Authors
-------
speechbrain-cmcr contributors
"""

import copy
import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from speechbrain_cmcr.inference.framing import padded_window
from speechbrain_cmcr.lobes.models.cmcr_net import StreamState

STREAM_FILE = "cmcr_stream.onnx"
OFFLINE_FILE = "cmcr_offline.onnx"
OPSET = 17


class StreamingStep(nn.Module):
    """``CMCRNet.stream`` on one frame, with the state as a flat list of
    tensors (what the ONNX graph's inputs and outputs are).

    Arguments
    ---------
    model : speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet
        A causal model, in eval mode.

    Example
    -------
    >>> from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8, causal=True).eval()
    >>> step = StreamingStep(model)
    >>> print(*step.state_names)
    frames encoder_0 encoder_1 attention_0 fusion_0 decoder_0 decoder_1
    >>> outputs = step(torch.zeros(1, 1, 33, 2), *step.initial_state())
    >>> outputs[0].shape, len(outputs)
    (torch.Size([1, 1, 33, 2]), 8)
    """

    def __init__(self, model):
        super().__init__()
        hold(self, model)
        state = model.stream_state()
        self.sizes = [len(group) for group in state[1:]]
        self.state_names = ["frames"] + [
            f"{field}_{index}"
            for field, size in zip(StreamState._fields[1:], self.sizes)
            for index in range(size)
        ]

    def initial_state(self):
        """The flat state at the start of a signal (zeros)."""
        return flatten(self.model.stream_state())

    def forward(self, noisy_spec, *state):
        """Enhances one frame ``noisy_spec`` [1, 1, F, 2]; returns the
        enhanced frame and the flat state after it."""
        groups, start = [state[0]], 1
        for size in self.sizes:
            groups.append(tuple(state[start : start + size]))
            start += size
        enhanced, new_state = self.model.stream(
            noisy_spec, StreamState(*groups)
        )
        return (enhanced, *flatten(new_state))


class OfflineGraph(nn.Module):
    """``CMCRNet.enhance_spectrum`` as a module (the offline graph).

    Arguments
    ---------
    model : speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet
        Any model, in eval mode.
    """

    def __init__(self, model):
        super().__init__()
        hold(self, model)

    def forward(self, noisy_spec):
        """Enhances a whole spectrum [B, T, F, 2]."""
        return self.model.enhance_spectrum(noisy_spec)


def hold(wrapper, model):
    """Gives ``wrapper`` the attribute ``model``, a frozen copy of
    ``model``, without registering it as a submodule: the exporter's tracer
    cannot take the extra state (the configuration) of CMCRNet's state
    dict, and traces the copy's parameters as constants all the same.

    Arguments
    ---------
    wrapper : torch.nn.Module
        The module to export.
    model : speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet
        The model it runs.
    """
    frozen = copy.deepcopy(model).requires_grad_(False)
    object.__setattr__(wrapper, "model", frozen)


def flatten(state):
    """The tensors of a :class:`StreamState` in the graph's order.

    Arguments
    ---------
    state : StreamState
        A stream's state.

    Returns
    -------
    list of torch.Tensor
        ``frames``, then the encoder, attention, fusion and decoder tensors.
    """
    return [state.frames] + [tensor for group in state[1:] for tensor in group]


def export_streaming_step(model, path):
    """Writes the streaming step of a causal ``model`` to ``path``.

    Arguments
    ---------
    model : speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet
        A causal model with ``attention_axis="frequency"``; put in eval mode.
    path : str or os.PathLike
        The ``.onnx`` file to write.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    model.eval()
    step = StreamingStep(model)
    state = step.initial_state()
    bins = model.config["n_fft"] // 2 + 1
    noisy = torch.zeros(1, 1, bins, 2)
    step(noisy, *state)  # refuses a model that does not stream
    _export(
        step,
        (noisy, *state),
        path,
        ["noisy_spec"] + step.state_names,
        ["enhanced_spec"] + [f"{name}_next" for name in step.state_names],
        dynamic_axes=None,
    )
    _write_metadata(path, model, "stream")
    return Path(path)


def export_offline(model, path):
    """Writes the offline graph of ``model`` (``enhance_spectrum``) to
    ``path``; batch and frame axes are free.

    Arguments
    ---------
    model : speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet
        Any model; put in eval mode.
    path : str or os.PathLike
        The ``.onnx`` file to write.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    model.eval()
    bins = model.config["n_fft"] // 2 + 1
    axes = {0: "batch", 1: "frames"}
    _export(
        OfflineGraph(model),
        (torch.zeros(1, 11, bins, 2),),
        path,
        ["noisy_spec"],
        ["enhanced_spec"],
        dynamic_axes={"noisy_spec": axes, "enhanced_spec": axes},
    )
    _write_metadata(path, model, "offline")
    return Path(path)


def export_onnx(model, folder):
    """Writes the graphs of ``model`` into ``folder``: ``cmcr_offline.onnx``
    always, ``cmcr_stream.onnx`` too for a model that streams (causal, with
    frequency attention).

    Arguments
    ---------
    model : speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet
        The model; put in eval mode.
    folder : str or os.PathLike
        Where to write (created if missing).

    Returns
    -------
    list of pathlib.Path
        The files written.

    Example
    -------
    >>> from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8, causal=True)
    >>> folder = getfixture("tmp_path")
    >>> [path.name for path in export_onnx(model, folder)]
    ['cmcr_offline.onnx', 'cmcr_stream.onnx']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [export_offline(model, folder / OFFLINE_FILE)]
    config = model.config
    if config["causal"] and config["attention_axis"] == "frequency":
        written.append(export_streaming_step(model, folder / STREAM_FILE))
    return written


def _export(module, args, path, input_names, output_names, dynamic_axes):
    """Runs the TorchScript-based exporter without its deprecation and
    tracer warnings (the traced graphs are checked by the tests)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )


def _write_metadata(path, model, graph):
    """Stores in the graph what a runner needs to frame the audio."""
    proto = onnx.load(str(path))
    window = padded_window(model.stft.window.numpy(), model.config["n_fft"])
    onnx.helper.set_model_props(
        proto,
        {
            "graph": graph,
            "sample_rate": str(model.sample_rate),
            "hop_length": str(model.hop_samples),
            "window": json.dumps(window.tolist()),
            "config": json.dumps(model.config),
        },
    )
    onnx.save(proto, str(path))
