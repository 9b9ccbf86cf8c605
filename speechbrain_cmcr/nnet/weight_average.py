"""An exponential moving average (EMA) of a model's weights.

The recipe validates, tests and exports the averaged weights (its
``ema_decay``; 0 makes them the last step's). One step's weights wander
with the step's batch, their average over the last few hundred steps does
not. The averaging itself is PyTorch's
``torch.optim.swa_utils.AveragedModel``.

The decay warms up as in TensorFlow's ``ExponentialMovingAverage`` with
``num_updates``: after ``n`` updates it is ``min(decay, (1 + n) / (10 +
n))``, so the average forgets the random initial weights within the first
steps, and short runs (the demo's 64 steps) average their last steps, not
their first.
"""

import torch
from torch.optim.swa_utils import AveragedModel

# The prefix of the averaged model's entries in an AveragedModel state dict.
AVERAGED_PREFIX = "module."
# The warm-up's offset: (1 + n) / (WARMUP + n).
WARMUP = 10


def warmed_up_decay(decay, num_updates):
    """The decay of the update after ``num_updates`` updates.

    Arguments
    ---------
    decay : float
        The decay once warmed up.
    num_updates : int
        Updates made so far.

    Returns
    -------
    float
        ``min(decay, (1 + num_updates) / (10 + num_updates))``.

    Example
    -------
    >>> warmed_up_decay(0.995, 0)
    0.1
    >>> warmed_up_decay(0.995, 10_000)
    0.995
    """
    return min(decay, (1 + num_updates) / (WARMUP + num_updates))


def exponential_moving_average(model, decay):
    """A frozen copy of ``model`` that ``update_parameters(model)`` moves
    toward the model's current weights (buffers included: BatchNorm's
    running statistics are averaged too).

    Arguments
    ---------
    model : torch.nn.Module
        The model being trained.
    decay : float
        Weight of the average in each update once warmed up, in [0, 1):
        after each step, ``average = decay * average + (1 - decay) *
        weights``. 0 keeps the last step's weights; 0.995 averages over
        about 200 steps. The first update copies the model's weights, and
        the decay warms up (:func:`warmed_up_decay`).

    Returns
    -------
    torch.optim.swa_utils.AveragedModel
        The average; its ``module`` is the averaged model.

    Example
    -------
    >>> import torch
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> average = exponential_moving_average(model, decay=0.5)
    >>> for weight in [2.0, 4.0, 4.0]:  # decays: copy, 2/11, 3/12
    ...     _ = model.weight.data.fill_(weight)
    ...     average.update_parameters(model)
    ...     print(round(average.module.weight.item(), 3))
    2.0
    3.636
    3.909
    >>> average.module.weight.requires_grad
    False
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")

    def update(average, weights, num_updates):
        if not average.is_floating_point():  # BatchNorm's batch count
            return weights
        weight = 1.0 - warmed_up_decay(decay, int(num_updates))
        return torch.lerp(average, weights, weight)

    average = AveragedModel(model, avg_fn=update, use_buffers=True)
    return average.requires_grad_(False)


def averaged_state_dict(state_dict):
    """The averaged model's own state dict, out of an ``AveragedModel``'s.

    Arguments
    ---------
    state_dict : dict
        ``AveragedModel.state_dict()``: ``n_averaged`` and ``module.*``.

    Returns
    -------
    dict
        The entries of ``module``, without the prefix.

    Example
    -------
    >>> import torch
    >>> average = exponential_moving_average(torch.nn.Linear(2, 1), 0.9)
    >>> sorted(averaged_state_dict(average.state_dict()))
    ['bias', 'weight']
    """
    return {
        key.removeprefix(AVERAGED_PREFIX): value
        for key, value in state_dict.items()
        if key.startswith(AVERAGED_PREFIX)
    }
