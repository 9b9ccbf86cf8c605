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

Several GPUs, or several CPU processes (without CUDA, the gloo backend is
chosen)::

    torchrun --nproc_per_node=2 train.py hparams/cmcr.yaml --data_folder=...

Re-running the same command resumes from the last checkpoint.

Authors
-------
speechbrain-cmcr contributors
"""

import csv
import dataclasses
import json
import os
import random
import sys

import speechbrain as sb
import torch
from speechbrain.utils.distributed import get_local_rank, run_on_main
from speechbrain.utils.fetching import FetchConfig
from speechbrain.utils.logger import get_logger

from speechbrain_cmcr.dataio.demo_corpus import make_demo_corpus
from speechbrain_cmcr.dataio.dynamic_mixing import prepare_dynamic_mixing
from speechbrain_cmcr.dataio.pairs import write_pair_manifest
from speechbrain_cmcr.lobes.teachers import save_random_ssl_teacher
from speechbrain_cmcr.processing.metrics import evaluate_pair
from speechbrain_cmcr.utils.hparams import load_hparams

logger = get_logger(__name__)


class CMCRBrain(sb.Brain):
    """Trains CMCR-Net with reconstruction, noise-branch, CR and (optional)
    stream-contrast losses; scores PESQ/STOI on a validation subset and the
    full metric suite on the test set."""

    def compute_forward(self, batch, stage):
        """Enhances the noisy batch: with the trained weights in training,
        with their moving average (``ema_decay``) outside it."""
        batch = batch.to(self.device)
        noisy, lengths = batch.noisy_sig
        if stage == sb.Stage.TRAIN:
            return self.modules.model(noisy, lengths)  # DDP-wrapped in DDP
        return self.modules.ema(noisy, lengths)

    def compute_objectives(self, predictions, batch, stage):
        """Computes the total loss; scores metrics outside training."""
        noisy, lengths = batch.noisy_sig
        clean, _ = batch.clean_sig
        terms = self.hparams.objective(
            predictions,
            clean,
            noisy,
            self._model(stage),
            lengths,
            step=self.optimizer_step if stage == sb.Stage.TRAIN else None,
        )
        self.loss_terms.append({k: v.item() for k, v in terms.items()})
        if stage != sb.Stage.TRAIN:
            self._score(batch, predictions.enhanced_wav, stage)
        return terms["total"]

    def on_fit_batch_start(self, batch, should_step):
        """With ``freeze_batchnorm``, keeps BatchNorm in inference mode
        while training: the layers normalise with their stored statistics
        and leave them unchanged (Brain sets every module to training mode
        at the start of each epoch)."""
        if self.hparams.freeze_batchnorm:
            for module in self._model(sb.Stage.TRAIN).modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Moves the weight average toward the weights just updated."""
        if should_step:
            self.modules.ema.update_parameters(self._model(sb.Stage.TRAIN))

    def _model(self, stage):
        """The model trained (unwrapped from DDP) in training, the average
        of its weights in validation and test."""
        if stage != sb.Stage.TRAIN:
            return self.modules.ema.module
        model = self.modules.model
        return model.module if hasattr(model, "module") else model

    def _score(self, batch, enhanced, stage):
        """Scores each utterance; writes enhanced wavs in the test stage.

        Not SpeechBrain's ``MetricStats``: it holds one scalar metric, so
        the seven scores would need seven of them, and CSIG, CBAK and COVL
        each recompute PESQ, LLR, WSS and SSNR. Measured on six real
        VoiceBank+DEMAND pairs, seven separate calls took 2.3 times as long
        as ``evaluate_pair``, which computes the shared parts once.
        """
        noisy, lengths = batch.noisy_sig
        clean, _ = batch.clean_sig
        rate = self.hparams.sample_rate
        for i, utt_id in enumerate(batch.id):
            if stage == sb.Stage.VALID and (
                self.valid_scored >= self.hparams.valid_metrics_subset
            ):
                return
            n = int(torch.round(lengths[i] * noisy.shape[1]))
            if stage == sb.Stage.TEST:
                sb.dataio.dataio.write_audio(
                    os.path.join(self.hparams.enhanced_folder, f"{utt_id}.wav"),
                    enhanced[i, :n].cpu(),
                    rate,
                )
            signals = {"": enhanced[i, :n]}
            if stage == sb.Stage.TEST:
                signals["noisy_"] = noisy[i, :n]
            ref = clean[i, :n].cpu().numpy()
            row = {"id": utt_id}
            try:
                for prefix, signal in signals.items():
                    scores = evaluate_pair(ref, signal.cpu().numpy(), rate)
                    row.update({prefix + k: v for k, v in scores.items()})
            except ValueError as error:
                # Too short for STOI/PESQ, or a silent reference: the
                # metrics are undefined, and the means leave it out.
                logger.warning("%s left out of the metrics: %s", utt_id, error)
                continue
            self.scores.append(row)
            self.valid_scored += 1

    def _wrap_distributed(self):
        """Wraps the model in DDP. SpeechBrain also turns BatchNorm into
        SyncBatchNorm, which PyTorch runs on GPUs only: CPU processes (gloo)
        keep per-process BatchNorm statistics instead."""
        if not (self.distributed_launch and self.device_type == "cpu"):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = torch.nn.parallel.DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Loads the checkpoint to test, as Brain does, and keeps its name
        for the test summary (the export checks it)."""
        tested = self.checkpointer.recover_if_possible(
            max_key=max_key, min_key=min_key
        )
        self.tested_checkpoint = tested.path.name if tested else None

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
            if "pesq" not in stats:
                raise ValueError(
                    "No validation utterance could be scored (each was "
                    "shorter than STOI's 0.41 s or had a silent reference)"
                )
            old_lr, new_lr = self.hparams.lr_annealing(epoch)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "epoch": epoch,
                    "lr": old_lr,
                    "steps": self.optimizer_step,
                },
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
                self.tested_checkpoint,
            )


def mean_scores(rows):
    """Averages every metric over the scored utterances."""
    if not rows:
        return {}
    keys = [key for key in rows[0] if key != "id"]
    return {key: sum(row[key] for row in rows) / len(rows) for key in keys}


def write_test_results(rows, stats, csv_path, summary_path, checkpoint):
    """Writes the per-file CSV and the JSON summary of the test stage; the
    summary names the ``checkpoint`` tested."""
    if not rows:
        return
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump({**stats, "checkpoint": checkpoint}, f, indent=2)
    logger.info("Test summary written to %s", summary_path)
    logger.info(
        "Test set, means over %d utterances:\n%s",
        len(rows),
        against_noisy(stats),
    )


def against_noisy(stats):
    """A table of each test metric of the enhanced speech next to the
    noisy input's, with the difference (positive: the model helps).

    Arguments
    ---------
    stats : dict
        Test means: each metric and its ``noisy_`` twin (other keys, such
        as the losses, are left out).

    Returns
    -------
    str
        One header line and one line per metric.

    Example
    -------
    >>> print(against_noisy({"loss": 0.5, "pesq": 1.3, "noisy_pesq": 1.2}))
    metric     noisy  enhanced  change
    pesq       1.200     1.300  +0.100
    """
    lines = ["metric     noisy  enhanced  change"]
    for key, value in stats.items():
        if f"noisy_{key}" in stats:
            noisy = stats[f"noisy_{key}"]
            lines.append(
                f"{key:<8} {noisy:>7.3f} {value:>9.3f} {value - noisy:>+7.3f}"
            )
    return "\n".join(lines)


def dataio_prep(hparams):
    """Builds the train, valid and test datasets from the JSON manifests.

    Training items are random crops of ``train_crop_seconds`` (the same crop
    of the noisy and clean twins), or, with ``dynamic_mixing``, clean crops
    mixed on the fly with noise; validation and test items are whole.
    Validation uses the real pairs of ``valid_pairs`` when it is set.
    """
    crop = int(hparams["train_crop_seconds"] * hparams["sample_rate"])

    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def whole_pipeline(noisy_wav, clean_wav):
        yield sb.dataio.dataio.read_audio(noisy_wav)
        yield sb.dataio.dataio.read_audio(clean_wav)

    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def crop_pipeline(noisy_wav, clean_wav):
        noisy = sb.dataio.dataio.read_audio(noisy_wav)
        clean = sb.dataio.dataio.read_audio(clean_wav)
        start = random.randint(0, max(noisy.shape[0] - crop, 0))
        yield noisy[start : start + crop]
        yield clean[start : start + crop]

    train_pipeline = crop_pipeline
    if hparams["dynamic_mixing"]:
        rir_csv = None
        if hparams["rir_source"]:
            rir_csv = os.path.join(hparams["prep_folder"], "rir.csv")
        mixer = hparams["mixer"](crop_samples=crop, rir_csv=rir_csv)

        @sb.utils.data_pipeline.takes("clean_wav")
        @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
        def mixing_pipeline(clean_wav):
            noisy, clean = mixer(sb.dataio.dataio.read_audio(clean_wav))
            yield noisy
            yield clean

        train_pipeline = mixing_pipeline

    def dataset(annotation, pipeline):
        return sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=annotation,
            dynamic_items=[pipeline],
            output_keys=["id", "noisy_sig", "clean_sig"],
        )

    # Whole utterances sorted by length pad least.
    return {
        "train": dataset(hparams["train_annotation"], train_pipeline),
        "valid": dataset(
            hparams["valid_pairs_annotation"]
            if hparams["valid_pairs"]
            else hparams["valid_annotation"],
            whole_pipeline,
        ).filtered_sorted(sort_key="length"),
        "test": dataset(
            hparams["test_annotation"], whole_pipeline
        ).filtered_sorted(sort_key="length"),
    }


def prepare_data(hparams):
    """Synthesises the demo corpus and teacher if asked, then writes the
    manifests (once, on the main process): VoiceBank's, or the dynamic
    mixing ones, and that of the real validation pairs if asked."""
    from voicebank_prepare import prepare_voicebank

    if hparams["valid_pairs"]:
        run_on_main(
            write_pair_manifest,
            kwargs={
                "folder": hparams["valid_pairs"],
                "json_path": hparams["valid_pairs_annotation"],
                "sample_rate": hparams["sample_rate"],
            },
        )

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
    if hparams["dynamic_mixing"]:
        run_on_main(
            prepare_dynamic_mixing,
            kwargs={
                "speech_source": hparams["speech_source"],
                "noise_source": hparams["noise_source"],
                "save_folder": hparams["prep_folder"],
                "sample_rate": hparams["sample_rate"],
                "rir_source": hparams["rir_source"],
                "valid_speakers": hparams["dm_valid_speakers"],
                "test_speakers": hparams["dm_test_speakers"],
                "valid_mixtures": hparams["dm_valid_mixtures"],
                "test_mixtures": hparams["dm_test_mixtures"],
                "snr_low": hparams["snr_low"],
                "snr_high": hparams["snr_high"],
                "level_low_db": hparams["level_low_db"],
                "level_high_db": hparams["level_high_db"],
                "seed": hparams["dm_seed"],
                "mixture_seconds": hparams["dm_mixture_seconds"],
                "skip_prep": hparams["skip_prep"],
                "num_workers": hparams["prep_workers"],
            },
        )
        return
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


def build_contrastive_regularization(hparams):
    """Loads the teacher named by ``teacher_type`` and builds CR on it;
    None (no teacher loaded) when ``cr_weight`` is 0."""
    if not hparams["cr_weight"]:
        return None
    teachers = hparams["teachers"]
    kind = hparams["teacher_type"]
    if kind not in teachers:
        raise ValueError(
            f"teacher_type must be one of {sorted(teachers)}, got {kind!r}"
        )
    return hparams["contrastive_regularization"](teacher=teachers[kind]())


def use_gloo_without_cuda(run_opts):
    """The run options of a ``torchrun`` launch, switched to the gloo
    backend when no CUDA device exists: SpeechBrain's default, NCCL, needs
    one GPU per process and would stop every process with "Not enough GPUs
    available!"."""
    if (
        get_local_rank() is not None
        and run_opts["distributed_backend"] == "nccl"
        and not torch.cuda.is_available()
    ):
        # A warning: logging is not set up yet, and it still shows.
        logger.warning(
            "No CUDA device: DDP runs on CPU processes with the gloo "
            "backend (--distributed_backend=gloo)"
        )
        return dataclasses.replace(run_opts, distributed_backend="gloo")
    return run_opts


def init_from_pretrained(hparams):
    """Loads the weights of the exported model named by ``init_from`` (a
    folder or a Hub id) into the model before training starts. A run that
    resumes from its own checkpoint overwrites them when it recovers.
    Files collected by an earlier start of the same run are fetched again:
    ``init_from`` may have changed since."""
    if not hparams["init_from"]:
        return
    pretrainer = hparams["pretrainer"]
    run_on_main(
        pretrainer.collect_files,
        kwargs={"fetch_config": FetchConfig(overwrite=True)},
    )
    pretrainer.load_collected()
    logger.info("Model initialised from %s", hparams["init_from"])


def main(argv):
    """Parses the command line, prepares data, trains and tests."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    hparams, hparams_file, overrides = load_hparams(hparams_file, overrides)

    run_opts = use_gloo_without_cuda(run_opts)
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    prepare_data(hparams)
    datasets = dataio_prep(hparams)
    init_from_pretrained(hparams)

    hparams["objective"] = hparams["objective"](
        contrastive=build_contrastive_regularization(hparams)
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
    checkpoint_keys = {"best": {"max_key": "pesq"}, "last": {}}
    if hparams["test_checkpoint"] not in checkpoint_keys:
        raise ValueError(
            "test_checkpoint must be 'best' or 'last', got "
            f"{hparams['test_checkpoint']!r}"
        )
    brain.evaluate(
        datasets["test"],
        **checkpoint_keys[hparams["test_checkpoint"]],
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv[1:])
