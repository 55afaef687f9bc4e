"""Fields every experiment config shares; each experiment's `get_config()` starts from `base_config()`."""

from __future__ import annotations

import ml_collections

from pkdot_jax import models
from pkdot_jax.train import stages


def base_config(model_size: str = "tiny") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seeds = (0,)               # members trained side by side (vmapped) when more than one
  config.pipeline = ("teacher", "tnet", "student")
  config.batch_size = 32            # global batch, split over all devices
  config.eval_batch_size = 64
  config.num_devices = ml_collections.config_dict.placeholder(int)  # None: all devices
  config.log_every = 10
  config.progress = True
  config.cache_teacher = False      # student stage: teacher outputs computed once (deterministic inputs only)
  config.select_metric = ""         # "" -> accuracy (classification) / ccc_mean (regression)
  config.test_every_epoch = True    # False: the test split is scored once, with the selected variables
  config.teacher_workdir = ""       # "": teacher and T-Net stages in the run's own workdir

  config.data = ml_collections.ConfigDict()
  config.data.name = "pkdot_synthetic"
  config.data.config_name = "binary"
  config.data.data_dir = "~/tensorflow_datasets"
  config.data.manual_dir = ""
  config.data.dataset_seed = 0
  config.data.overrides = ml_collections.ConfigDict()
  config.data.protocol = "subject"  # subject-disjoint folds; "authors" = their clip-level (leaky) folds
  config.data.num_folds = 5
  config.data.fold = 0
  config.data.fold_seed = 0
  config.data.val_fraction = 0.2
  config.data.augment = False     # TSN frame sampling, random crop, flip (training only)
  config.data.num_frames = 0       # 0: keep the stored frames
  config.data.size = ()            # resize (H, W); () keeps the stored size
  config.data.crop = ()            # crop (H, W) after resizing
  config.data.worker_count = 0
  config.data.in_memory = False    # decode every record once per process and keep them in memory (small sets)

  config.model = models.default_config(model_size)

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"      # or "sgd" (momentum below)
  config.optimizer.momentum = 0.9
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "constant"
  config.optimizer.warmup_steps = 0
  config.optimizer.weight_decay = 0.0
  config.optimizer.grad_clip = 0.0

  config.stages = ml_collections.ConfigDict()
  for stage in stages.STAGE_ORDER:
    # optimizer: fields of config.optimizer overridden for this stage only (e.g. a smaller student rate)
    config.stages[stage] = ml_collections.ConfigDict({"num_epochs": 5, "optimizer": {}})

  config.tnet = ml_collections.ConfigDict({"objective": "mse"})
  # Student sub-trees initialised from the trained teacher (names shared by Teacher and Student).
  config.student_init_from_teacher = ("visual_backbone",)
  # "finetune" | "frozen_from_video": the authors' student, its visual backbone the pretrain_video model's, frozen.
  config.student_backbone = "finetune"

  config.distill = ml_collections.ConfigDict()
  config.distill.method = "pkdot"   # any name of pkdot_jax.losses.available(), or "none"
  config.distill.weight = 0.6       # lambda; a list trains one member per value (vmapped)
  config.distill.task_weight = 1.0
  config.distill.mt_pkdot = False
  config.distill.kwargs = ml_collections.ConfigDict({"k": 30, "epsilon": 0.01})
  # Optional, no default (train/stages.py, FIELDS.optional): distill.extra, further losses added to the same
  # student loss, each {"method", "weight", "kwargs"} with a fixed weight (e.g. PKDOT + generalized distillation).

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 0  # 0: at the end of every epoch only
  config.checkpoint.max_to_keep = 2
  config.checkpoint.min_interval_secs = 0.0  # skip periodic checkpoints taken sooner than this after the last
  return config
