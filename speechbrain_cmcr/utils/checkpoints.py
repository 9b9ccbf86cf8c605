"""A checkpointer whose checkpoints appear only once they are complete.

SpeechBrain's ``Checkpointer`` writes a checkpoint's meta file (``CKPT.yaml``)
first and the parameter files after it, and it recognises a checkpoint by its
meta file. A run killed between the two leaves a checkpoint that looks valid
but lacks files (or holds a truncated one), and the next run crashes while
recovering it. Here the meta file is written under a temporary name and
renamed into place after every parameter file is saved; a rename is atomic,
so a checkpoint either is complete or is not seen at all.
"""

import logging
import os
import pathlib
import shutil

from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, Checkpointer
from speechbrain.utils.distributed import if_main_process

logger = logging.getLogger(__name__)

PENDING_SUFFIX = ".pending"


class CompleteCheckpointer(Checkpointer):
    """``speechbrain.utils.checkpoints.Checkpointer`` that publishes each
    checkpoint's meta file last, and removes the leftovers of checkpoints
    whose saving was interrupted. Arguments as ``Checkpointer``.

    Example
    -------
    >>> import tempfile
    >>> import torch
    >>> folder = tempfile.mkdtemp()
    >>> model = torch.nn.Linear(2, 2)
    >>> checkpointer = CompleteCheckpointer(folder, {"model": model})
    >>> ckpt = checkpointer.save_checkpoint()
    >>> sorted(p.name for p in ckpt.path.iterdir())
    ['CKPT.yaml', 'model.ckpt']
    >>> checkpointer.find_checkpoint() == ckpt
    True
    """

    def save_checkpoint(self, *args, **kwargs):
        """Saves a checkpoint as ``Checkpointer.save_checkpoint`` does, then
        makes it visible by renaming its meta file into place."""
        if if_main_process():
            self.remove_incomplete_checkpoints()
        checkpoint = super().save_checkpoint(*args, **kwargs)
        if checkpoint is not None:
            pending = _pending_metafile(checkpoint.path)
            os.replace(pending, checkpoint.path / METAFNAME)
        return checkpoint

    def _save_checkpoint_metafile(self, fpath, *args, **kwargs):
        # Called by Checkpointer.save_checkpoint before the parameter files.
        return super()._save_checkpoint_metafile(
            _pending_metafile(pathlib.Path(fpath).parent), *args, **kwargs
        )

    def remove_incomplete_checkpoints(self):
        """Deletes checkpoint folders without a meta file, left by a save
        that was interrupted."""
        for path in self.checkpoints_dir.glob(f"{CKPT_PREFIX}*"):
            if path.is_dir() and not (path / METAFNAME).exists():
                logger.warning(f"Removing an incomplete checkpoint: {path}")
                shutil.rmtree(path)


def _pending_metafile(ckpt_dir):
    """Temporary name of the meta file while a checkpoint is being saved."""
    return ckpt_dir / (METAFNAME + PENDING_SUFFIX)
