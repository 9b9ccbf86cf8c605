"""A checkpoint interrupted while saving is never recovered."""

import pytest
import torch

from speechbrain_cmcr.utils.checkpoints import CompleteCheckpointer


class Interrupted(Exception):
    pass


class FailsOnSave:
    """A recoverable whose save is interrupted, like a run killed mid-save."""

    def save(self, path):
        path.write_bytes(b"trunc")
        raise Interrupted

    def load(self, path, end_of_epoch):
        raise AssertionError("an incomplete checkpoint was loaded")


def make_checkpointer(folder, with_failing=False):
    recoverables = {"model": torch.nn.Linear(3, 3)}
    hooks = {}
    if with_failing:
        recoverables["extra"] = FailsOnSave()
        hooks = {
            "custom_save_hooks": {"extra": lambda obj, p: obj.save(p)},
            "custom_load_hooks": {"extra": lambda obj, p, e: obj.load(p, e)},
        }
    return CompleteCheckpointer(folder, recoverables, **hooks)


def test_interrupted_save_leaves_no_visible_checkpoint(tmp_path):
    good = make_checkpointer(tmp_path).save_checkpoint(name="good")
    with pytest.raises(Interrupted):
        make_checkpointer(tmp_path, with_failing=True).save_checkpoint(
            name="broken"
        )
    assert (tmp_path / "CKPT+broken").is_dir()
    checkpointer = make_checkpointer(tmp_path)
    assert checkpointer.find_checkpoint() == good
    assert checkpointer.recover_if_possible() == good


def test_next_save_removes_the_interrupted_one(tmp_path):
    with pytest.raises(Interrupted):
        make_checkpointer(tmp_path, with_failing=True).save_checkpoint(
            name="broken"
        )
    saved = make_checkpointer(tmp_path).save_checkpoint(name="next")
    assert not (tmp_path / "CKPT+broken").exists()
    assert sorted(p.name for p in saved.path.iterdir()) == [
        "CKPT.yaml",
        "model.ckpt",
    ]
