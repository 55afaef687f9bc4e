"""Paper setup on Aff-Wild2 valence/arousal (ABAW VA challenge): audio-visual JCA teacher, video-only PKDOT student.

The authors' pipeline, run by one command (`config.pipeline`; stages resumable, skipped once done): visual-only
model (pretrain_video) -> audio model (pretrain_privileged: log-mel ResNet-18) -> teacher (starts from both
backbones) -> T-Net -> student. The backbones start from torchvision's Kinetics-400 R3D-18 and ImageNet ResNet-18,
converted once to torch-free .npz files on a machine with torch (biovid_binary.py says where the .pth files are):

  python -m pkdot_jax.models.convert r3d_18-b3b3357e.pth weights/r3d_18.npz
  python -m pkdot_jax.models.convert resnet18-f37072fd.pth weights/resnet18.npz
  pkdot train --config=affwild2_va --workdir=runs/affwild2_va \\
      --config.data.manual_dir=/path/to/affwild2 \\
      --config.model.video.pretrained=weights/r3d_18.npz --config.model.privileged_net.pretrained=weights/resnet18.npz
  pkdot train --config=affwild2_va:authors --workdir=runs/affwild2_va_authors \\
      --config.data.manual_dir=/path/to/affwild2 \\
      --config.model.video.pretrained=weights/r3d_18.npz --config.model.privileged_net.pretrained=weights/resnet18.npz
  pkdot train --config=affwild2_va:smoke --workdir=/tmp/smoke \\
      --config.data.manual_dir=/path/to/fake_affwild2      # tiny models, 1 epoch (what the tests run)

Stage by stage: `--stages=pretrain_video`, then `pretrain_privileged`, `teacher`, `tnet`, `student` (same workdir
and flags); `--config.pipeline=teacher,tnet,student` skips the unimodal models. Without weight files the backbones
start from random weights.

Seeds side by side: `--config.seeds=0,1,2`. Variants (comma-separated after the colon):
  (none)   official split (`data.protocol="official"`): the official Validation_Set is the test set (the ABAW
           test labels are not public); 20 % of the official training *videos* are held out for model selection
           (`data.val_fraction`, drawn with `data.fold_seed`); the best epoch maximises the validation mean CCC.
  authors  the authors' student (visual backbone = the visual-only model's, frozen; fusion and head trained:
           `config.student_backbone="frozen_from_video"`) and the usual practice of the published Aff-Wild2
           numbers: train on all official training videos and pick the best epoch on the official validation set,
           which is also the reported set (`data.select_on_test`). A selection leak, named only to compare with
           published figures.
  smoke    tiny models (two residual stages of 8 / 16 channels), 4 frames of 16 x 16, batch 8, 1 epoch per
           stage (CPU, under a minute; what tests/configs/test_paper_configs.py runs).

Setup: teacher = R3D-18 (paper widths) on 8 consecutive aligned face frames of 112 x 112 (the builder's clips: a
clip ends at a labelled frame, every 8th labelled frame; target = valence/arousal of the last frame) + ResNet-18 on
log-mel spectrograms of the clip's audio at the builder's 16 kHz (64 mels, 512-point FFT, hop 160) fused with
joint cross-attention (JCA, Praveen et al. 2022); task regression (tanh outputs in [-1, 1], 2 outputs) with the
1 - CCC loss; T-Net 512-256-128-256-512 (MSE) from visual to audio embedding; student = R3D-18 + T-Net + JCA with
1 - CCC + 0.6 x PKDOT (k = 30, eps = 0.01). Batch 128, Adam 1e-4, 20 epochs per stage (the unimodal models'
count is ours). Reported: pooled CCC of valence and arousal on the test set (the ABAW metric) and their mean, plus
per-video CCC. Logit-based
distillation losses (Hinton KD, ...) do not apply to regression and are refused by the trainer; embedding- and
relation-based ones (PKDOT, PKT, RKD, FitNets, ...) do.

Not reproduced: the ABAW test set (labels withheld); subject identities (Aff-Wild2 has none, so held-out videos
are the unit: `<video>_left`/`<video>_right` are two people of one recording sharing its audio, and may fall on
different sides of the train/validation hold-out, never of train/test, which the official split separates).

Data: Aff-Wild2 is distributed by the ABAW organisers after an EULA (https://ibug.doc.ic.ac.uk/resources/aff-wild2/).
Put into `<manual_dir>`: `cropped_aligned/<video>/00001.jpg ...`,
`<anything>/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt` and the raw videos with audio
(`videos/<base>.mp4` or `.avi`, any depth); see pkdot_jax/data/affwild2 MANUAL_DOWNLOAD_INSTRUCTIONS. The first run
builds the array_record set (decoding audio with PyAV) under `config.data.data_dir` once.
"""

from pkdot_jax.configs import biovid_binary
from pkdot_jax.configs import common


def get_config(arg: str = ""):
  variants = biovid_binary.parse_variants(arg, "affwild2_va", ("authors", "smoke"))
  smoke = "smoke" in variants
  config = common.base_config("tiny" if smoke else "paper")
  biovid_binary.paper_training(config)

  config.data.name = "affwild2"
  config.data.config_name = "va_last"
  config.data.manual_dir = ""
  config.data.overrides = {"num_frames": 8, "height": 112, "width": 112, "clip_stride": 8, "audio_fs": 16000}
  config.data.num_frames = 8
  config.data.size = ()
  config.data.crop = ()
  config.data.augment = True
  config.data.protocol = "official"
  config.data.val_fraction = 0.2
  config.data.fold_seed = 0
  config.data.select_on_test = False
  config.cache_teacher = False

  m = config.model
  m.task = "regression"
  m.num_outputs = 2
  m.privileged = "audio"
  m.privileged_backbone = "resnet2d18"
  m.logmel.fs = 16000.0  # = the builder's audio_fs (checked against the dataset's metadata at load time)
  m.fusion.kind = "jca"
  m.input_shapes.video = (8, 112, 112, 3)
  m.input_shapes.audio = (round(8 / 30.0 * 16000),)  # the builder's window: num_frames / 30 fps
  config.select_metric = "ccc_mean"

  if "authors" in variants:
    config.student_backbone = "frozen_from_video"
    config.data.val_fraction = 0.0
    config.data.select_on_test = True

  if smoke:
    biovid_binary.smoke_training(config)
    # Fake layout (tests/data/fakes.write_affwild2): 16 x 16 crops, 10 fps raw videos with a 16 kHz track.
    config.data.overrides = {"num_frames": 4, "height": 16, "width": 16, "clip_stride": 1, "audio_fs": 16000,
                             "nominal_fps": 10.0}
    config.data.num_frames = 4
    m.input_shapes.video = (4, 16, 16, 3)
    m.input_shapes.audio = (6400,)
  return config
