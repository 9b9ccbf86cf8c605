#!/usr/bin/env python3
"""Recipe for training CMCR-Net on VoiceBank+DEMAND.

CMCR-Net learns from the clean speech (positive information) and the noisy
mixture (negative information): a collaboration module splits its features
into speech-relevant and speech-irrelevant streams, and a contrastive
regularization pulls the enhanced speech toward the clean speech and away
from the mixture in the space of a frozen self-supervised teacher.

To run this recipe::

    python train.py hparams/cmcr.yaml --data_folder=/path/to/VoiceBank
    python train.py hparams/demo.yaml   # synthetic demo data, offline

Several GPUs (or CPU processes with gloo)::

    torchrun --nproc_per_node=2 train.py hparams/cmcr.yaml --data_folder=...

Re-running the same command resumes from the last checkpoint.

Authors
-------
speechbrain-cmcr contributors
"""

import csv
import json
import os
import random
import sys

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_cmcr.dataio.demo_corpus import make_demo_corpus
from speechbrain_cmcr.lobes.teachers import save_random_ssl_teacher
from speechbrain_cmcr.processing.metrics import evaluate_pair

logger = get_logger(__name__)


class CMCRBrain(sb.Brain):
    """Trains CMCR-Net with reconstruction, noise-branch, CR and (optional)
    stream-contrast losses; scores PESQ/STOI on a validation subset and the
    full metric suite on the test set."""

    def compute_forward(self, batch, stage):
        """Enhances the noisy batch."""
        batch = batch.to(self.device)
        noisy, lengths = batch.noisy_sig
        return self.modules.model(noisy, lengths)

    def compute_objectives(self, predictions, batch, stage):
        """Computes the total loss; scores metrics outside training."""
        noisy, lengths = batch.noisy_sig
        clean, _ = batch.clean_sig
        terms = self.hparams.objective(
            predictions, clean, noisy, self._model(), lengths
        )
        self.loss_terms.append({k: v.item() for k, v in terms.items()})
        if stage != sb.Stage.TRAIN:
            self._score(batch, predictions.enhanced_wav, stage)
        return terms["total"]

    def _model(self):
        """The model itself, unwrapped from DDP."""
        model = self.modules.model
        return model.module if hasattr(model, "module") else model

    def _score(self, batch, enhanced, stage):
        """Scores each utterance; writes enhanced wavs in the test stage."""
        noisy, lengths = batch.noisy_sig
        clean, _ = batch.clean_sig
        rate = self.hparams.sample_rate
        for i, utt_id in enumerate(batch.id):
            if stage == sb.Stage.VALID and (
                self.valid_scored >= self.hparams.valid_metrics_subset
            ):
                return
            n = int(torch.round(lengths[i] * noisy.shape[1]))
            ref = clean[i, :n].cpu().numpy()
            row = {"id": utt_id}
            row.update(evaluate_pair(ref, enhanced[i, :n].cpu().numpy(), rate))
            if stage == sb.Stage.TEST:
                noisy_scores = evaluate_pair(
                    ref, noisy[i, :n].cpu().numpy(), rate
                )
                row.update({f"noisy_{k}": v for k, v in noisy_scores.items()})
                sb.dataio.dataio.write_audio(
                    os.path.join(self.hparams.enhanced_folder, f"{utt_id}.wav"),
                    enhanced[i, :n].cpu(),
                    rate,
                )
            self.scores.append(row)
            self.valid_scored += 1

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-stage accumulators."""
        self.loss_terms = []
        self.scores = []
        self.valid_scored = 0
        if stage == sb.Stage.TEST:
            os.makedirs(self.hparams.enhanced_folder, exist_ok=True)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the losses and metrics, keeps the best checkpoint by PESQ,
        and writes the test results."""
        stats = {"loss": stage_loss}
        for key in self.loss_terms[0] if self.loss_terms else []:
            values = [terms[key] for terms in self.loss_terms]
            stats[f"loss_{key}"] = sum(values) / len(values)
        stats.update(mean_scores(self.scores))
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
        elif stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"pesq": stats["pesq"], "stoi": stats["stoi"]},
                max_keys=["pesq"],
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
            write_test_results(
                self.scores,
                stats,
                self.hparams.test_csv,
                self.hparams.test_summary,
            )


def mean_scores(rows):
    """Averages every metric over the scored utterances."""
    if not rows:
        return {}
    keys = [key for key in rows[0] if key != "id"]
    return {key: sum(row[key] for row in rows) / len(rows) for key in keys}


def write_test_results(rows, stats, csv_path, summary_path):
    """Writes the per-file CSV and the JSON summary of the test stage."""
    if not rows:
        return
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    logger.info("Test summary written to %s", summary_path)


def dataio_prep(hparams):
    """Builds the train, valid and test datasets from the JSON manifests.

    Training items are random crops of ``train_crop_seconds`` (the same crop
    of the noisy and clean twins); validation and test items are whole.
    """
    crop = int(hparams["train_crop_seconds"] * hparams["sample_rate"])

    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def whole_pipeline(noisy_wav, clean_wav):
        noisy = sb.dataio.dataio.read_audio(noisy_wav)
        yield noisy
        clean = sb.dataio.dataio.read_audio(clean_wav)
        yield clean

    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def crop_pipeline(noisy_wav, clean_wav):
        noisy = sb.dataio.dataio.read_audio(noisy_wav)
        clean = sb.dataio.dataio.read_audio(clean_wav)
        start = random.randint(0, max(noisy.shape[0] - crop, 0))
        yield noisy[start : start + crop]
        yield clean[start : start + crop]

    datasets = {}
    for split in ("train", "valid", "test"):
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=hparams[f"{split}_annotation"],
            replacements={"data_root": hparams["data_folder"]},
            dynamic_items=[
                crop_pipeline if split == "train" else whole_pipeline
            ],
            output_keys=["id", "noisy_sig", "clean_sig"],
        )
    # Whole utterances sorted by length pad least.
    for split in ("valid", "test"):
        datasets[split] = datasets[split].filtered_sorted(sort_key="length")
    return datasets


def prepare_data(hparams):
    """Synthesises the demo corpus and teacher if asked, then writes the
    manifests (once, on the main process)."""
    from voicebank_prepare import prepare_voicebank

    if hparams["demo_data"]:
        run_on_main(
            make_demo_corpus,
            kwargs={
                "folder": hparams["data_folder"],
                "n_train": hparams["demo_train_utterances"],
                "n_test": hparams["demo_test_utterances"],
                "sample_rate": hparams["sample_rate"],
                "seed": hparams["seed"],
            },
        )
        if not os.path.isdir(hparams["teacher_source"]):
            run_on_main(
                save_random_ssl_teacher,
                kwargs={"folder": hparams["teacher_source"]},
            )
    run_on_main(
        prepare_voicebank,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["prep_folder"],
            "valid_speakers": hparams["valid_speakers"],
            "sample_rate": hparams["sample_rate"],
            "skip_prep": hparams["skip_prep"],
            "num_workers": hparams["prep_workers"],
        },
    )


def resolve_hparams_file(hparams_file, overrides):
    """Returns the yaml file to load and the overrides to apply to it.

    A yaml with a ``base_hparams`` key (like ``hparams/demo.yaml``) is a set
    of overrides of that base file (a path relative to it); overrides given
    on the command line apply on top.
    """
    with open(hparams_file, encoding="utf-8") as fin:
        content = yaml.safe_load(fin) or {}
    if "base_hparams" not in content:
        return hparams_file, overrides
    base = os.path.join(
        os.path.dirname(hparams_file), content.pop("base_hparams")
    )
    content.update(yaml.safe_load(overrides or "") or {})
    return base, content


def main(argv):
    """Parses the command line, prepares data, trains and tests."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    hparams_file, overrides = resolve_hparams_file(hparams_file, overrides)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)

    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    prepare_data(hparams)
    datasets = dataio_prep(hparams)

    teacher = hparams["teacher"]() if hparams["cr_weight"] else None
    hparams["objective"] = hparams["objective"](
        contrastive=hparams["contrastive_regularization"](teacher=teacher)
        if teacher is not None
        else None
    )
    brain = CMCRBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        train_set=datasets["train"],
        valid_set=datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.evaluate(
        datasets["test"],
        max_key="pesq",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv[1:])
