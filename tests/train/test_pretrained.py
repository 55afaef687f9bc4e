"""Pretrained backbones in the pipeline and the authors' frozen-backbone student.

Weight files are written from NumPy with torchvision's tensor names (tests/models/test_convert.py's shape table) at
the shapes of the config under test: the first stage that builds a backbone must start from exactly those values,
later stages from the earlier stage's; a bad file must fail in one line before the workdir exists. The frozen
student's backbone must come out bit-identical to the visual-only model's while its fusion trains.
"""

import hashlib
import json
import os
import shutil
import sys

import jax
import numpy as np
import pytest

from pkdot_jax import models
from pkdot_jax.models import pretrained
from pkdot_jax.train import checkpoint, loop, runs, schema
from pkdot_jax.train.initial import initial_state
from pkdot_jax.train.programs import Context
from train_helpers import smoke_config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
from test_convert import _torch_resnet, torchvision_shapes  # pylint: disable=g-import-not-at-top


def _write(path, arch, net_cfg, seed, **changes):
  """A torchvision-named state dict of random values at the config's widths / blocks (fc included), as .npz."""
  rng = np.random.default_rng(seed)
  shapes = torchvision_shapes(arch, tuple(net_cfg.widths), tuple(net_cfg.blocks))
  state = {name: (rng.uniform(0.5, 1.5, shape) if name.endswith("running_var") else rng.standard_normal(shape))
           .astype(np.float32) for name, shape in shapes.items()}
  state.update(changes)
  np.savez(path, **state)
  return state


def _converted(path, arch, target):
  from pkdot_jax.models import convert
  return convert.torchvision_to_flax(convert.load_state_dict(path), target, arch=arch)


def _load(workdir, stage):
  return jax.tree.map(np.asarray, checkpoint.load_variables(os.path.join(workdir, stage, "best")))


def _assert_equal_trees(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture
def zero_epochs_allowed(monkeypatch):
  """Zero epochs leave best/ at the initial variables, which is what these tests compare. The schema refuses
  them to users (a best/ that was never trained, read by later stages); here only that check is relaxed."""
  original = schema.validate

  def validate(config):
    relaxed = config.copy_and_resolve_references()
    for stage in relaxed.stages:
      relaxed.stages[stage].num_epochs = max(1, relaxed.stages[stage].num_epochs)
    original(relaxed)
  monkeypatch.setattr(schema, "validate", validate)


def test_first_stage_starts_from_the_files_later_stages_graft(data_dir, tmp_path, zero_epochs_allowed):
  """pretrain_video reads the R3D-18 file; the teacher grafts that backbone and reads the ResNet-18 file itself
  (no pretrain_privileged in this pipeline). Zero epochs: best/ holds the initial variables."""
  config = smoke_config(data_dir, **{"stages.pretrain_video.num_epochs": 0, "stages.teacher.num_epochs": 0})
  m = config.model
  video = _write(tmp_path / "r3d.npz", "r3d_18", m.video, 0)
  _write(tmp_path / "resnet.npz", "resnet18", m.privileged_net, 1)
  m.video.pretrained, m.privileged_net.pretrained = str(tmp_path / "r3d.npz"), str(tmp_path / "resnet.npz")
  workdir = str(tmp_path / "run")
  loop.run_pipeline(config, workdir, ("pretrain_video", "teacher"))

  first = _load(workdir, "pretrain_video")
  expected_video = _converted(tmp_path / "r3d.npz", "r3d_18",
                              pretrained.backbone_target(m, "visual_backbone"))
  _assert_equal_trees({c: first[c]["visual_backbone"] for c in ("params", "batch_stats")}, expected_video)
  np.testing.assert_array_equal(first["params"]["visual_backbone"]["layer1_0"]["conv1"]["kernel"],
                                np.transpose(video["layer1.0.conv1.0.weight"], (2, 3, 4, 1, 0)))
  teacher = _load(workdir, "teacher")
  _assert_equal_trees({c: teacher[c]["visual_backbone"] for c in ("params", "batch_stats")}, expected_video)
  expected_resnet = _converted(tmp_path / "resnet.npz", "resnet18",
                               pretrained.backbone_target(m, "privileged_backbone"))
  _assert_equal_trees({c: teacher[c]["privileged_backbone"]["resnet"] for c in ("params", "batch_stats")},
                      expected_resnet)

  info = json.load(open(os.path.join(workdir, "run_info.json")))[-1]["pretrained"]
  record = info["config.model.video.pretrained"]
  assert record["path"] == str(tmp_path / "r3d.npz")
  assert record["sha256"] == hashlib.sha256((tmp_path / "r3d.npz").read_bytes()).hexdigest()
  assert info["config.model.privileged_net.pretrained"]["bytes"] == os.path.getsize(tmp_path / "resnet.npz")


def _bad_cases(tmp_path, m):
  """(field values, fragments of the one-line error) for files that must be refused."""
  cases = []
  _write(tmp_path / "image.npz", "resnet18", m.video, 0)
  cases.append(({"video.pretrained": tmp_path / "image.npz"},
                ["image.npz", "holds a torchvision resnet18 state dict", "r3d_18"]))
  cases.append(({"video.pretrained": tmp_path / "nosuch.npz"}, ["config.model.video.pretrained", "nosuch.npz",
                                                                "no such file"]))
  width = m.privileged_net.widths[1]
  _write(tmp_path / "shape.npz", "resnet18", m.privileged_net, 0,
         **{"layer2.0.conv1.weight": np.zeros((width, m.privileged_net.widths[0], 5, 5), np.float32)})
  cases.append(({"privileged_net.pretrained": tmp_path / "shape.npz"},
                ["config.model.privileged_net.pretrained", "shape.npz", "'layer2.0.conv1.weight'",
                 f"({width}, {m.privileged_net.widths[0]}, 5, 5)", f"({width}, {m.privileged_net.widths[0]}, 3, 3)"]))
  deeper = m.video.copy_and_resolve_references()
  deeper.widths, deeper.blocks = tuple(deeper.widths) + (128,), tuple(deeper.blocks) + (1,)
  _write(tmp_path / "deeper.npz", "r3d_18", deeper, 0)
  cases.append(({"video.pretrained": tmp_path / "deeper.npz"},
                ["deeper.npz", f"'layer{len(deeper.widths)}.0.", "no place"]))  # the extra stage's tensors
  cases.append(({"video.pretrained": tmp_path / "image.npz", "video.arch": "frame_cnn"}, ["video.arch", "r3d18"]))
  _write(tmp_path / "nan.npz", "r3d_18", m.video, 0, **{"layer1.0.conv2.1.running_var": np.full(
      m.video.widths[0], -1.0, np.float32), "layer1.0.conv1.0.weight": np.full(
          (m.video.widths[0],) * 2 + (3, 3, 3), np.nan, np.float32)})
  cases.append(({"video.pretrained": tmp_path / "nan.npz"}, ["nan.npz", "'layer1.0.conv1.0.weight'", "non-finite"]))
  return cases


def test_bad_weight_files_fail_in_one_line_before_anything_is_written(data_dir, tmp_path):
  config = smoke_config(data_dir)
  for i, (fields, fragments) in enumerate(_bad_cases(tmp_path, config.model)):
    bad = config.copy_and_resolve_references()
    for path, value in fields.items():
      group, name = path.split(".")
      bad.model[group][name] = str(value)
    workdir = tmp_path / f"run{i}"
    with pytest.raises(ValueError) as error:
      loop.run_pipeline(bad, str(workdir))
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
      assert fragment in message, (fragment, message)
    assert not workdir.exists()


def test_a_wrong_file_on_the_command_line_is_one_line_and_writes_nothing(tmp_path):
  from test_cli import assert_user_error, pkdot  # pylint: disable=g-import-not-at-top
  cfg = models.default_config("tiny")
  _write(tmp_path / "r3d.npz", "r3d_18", cfg.video, 0,
         **{"stem.0.weight": np.zeros((cfg.video.widths[0], 3, 1, 7, 7), np.float32)})
  workdir = tmp_path / "run"
  proc = pkdot("train", "--config=synthetic:smoke", f"--workdir={workdir}",
               f"--config.model.video.pretrained={tmp_path / 'r3d.npz'}", "--config.data.data_dir=" + str(tmp_path))
  assert_user_error(proc, "config.model.video.pretrained=", "r3d.npz", "'stem.0.weight'", "(8, 3, 1, 7, 7)",
                    "(8, 3, 3, 7, 7)")
  assert not workdir.exists()


def test_a_finished_stage_does_not_need_its_file_again(data_dir, tmp_path, zero_epochs_allowed):
  """The file is read by the stage that starts from it; once that stage is done, re-running the command (or
  running the next stages) does not need the file, which may have been moved."""
  config = smoke_config(data_dir, **{"stages.pretrain_video.num_epochs": 0})
  _write(tmp_path / "r3d.npz", "r3d_18", config.model.video, 0)
  config.model.video.pretrained = str(tmp_path / "r3d.npz")
  workdir = str(tmp_path / "run")
  loop.run_pipeline(config, workdir, ("pretrain_video",))
  os.remove(tmp_path / "r3d.npz")
  loop.check_run(config, workdir, ("pretrain_video", "teacher"))  # the teacher grafts pretrain_video's backbone
  with pytest.raises(ValueError, match="no such file"):
    loop.check_run(config, str(tmp_path / "fresh"), ("pretrain_video", "teacher"))


def test_saved_configs_without_the_new_fields_still_resume(tmp_path):
  config = smoke_config(tmp_path)
  saved = checkpoint.drop_fields(checkpoint.config_to_dict(config),
                                 ("model.video.pretrained", "model.privileged_net.pretrained", "student_backbone"))
  (tmp_path / "config.json").write_text(json.dumps(saved))
  checkpoint.check_or_write_config(str(tmp_path), config, write=False)
  config.student_backbone = "frozen_from_video"
  with pytest.raises(ValueError, match="student_backbone: saved 'finetune', now 'frozen_from_video'"):
    checkpoint.check_or_write_config(str(tmp_path), config, write=False)


def test_frozen_student_backbone_is_the_visual_only_models(trained_pipeline, tmp_path):
  """student_backbone="frozen_from_video": after training, the student's visual backbone (params and BatchNorm
  statistics) is bit-identical to pretrain_video's best/, the T-Net to the fitted one; the fusion has trained."""
  base_config, base_workdir, _ = trained_pipeline
  teacher_dir = tmp_path / "teacher"
  shutil.copytree(base_workdir, teacher_dir)  # its teacher and T-Net, not retrained here
  config = base_config.copy_and_resolve_references()
  config.student_backbone = "frozen_from_video"
  config.teacher_workdir = str(teacher_dir)
  workdir = str(tmp_path / "student")
  context = Context()
  with pytest.raises(FileNotFoundError, match="pretrain_video"):
    loop.check_run(config, workdir, ("student",), context)
  loop.run_pipeline(config, workdir, ("pretrain_video",), context=context)
  initial = jax.tree.map(np.asarray, initial_state(
      runs.setup("student", config, workdir, str(teacher_dir), None, context)).variables())
  results = loop.run_pipeline(config, workdir, ("student",), context=context)
  assert np.isfinite(results["student"]["members"][0]["val"]["accuracy"])

  student, video = _load(workdir, "student"), _load(str(teacher_dir), "pretrain_video")
  teacher, tnet = _load(str(teacher_dir), "teacher"), _load(str(teacher_dir), "tnet")
  for collection in ("params", "batch_stats"):
    _assert_equal_trees(student[collection]["visual_backbone"], video[collection]["visual_backbone"])
  # ... and not the teacher's backbone (the default graft), which trained from another initialisation.
  assert not np.array_equal(student["params"]["visual_backbone"]["stem_conv"]["kernel"],
                            teacher["params"]["visual_backbone"]["stem_conv"]["kernel"])
  _assert_equal_trees(student["params"]["tnet"], tnet["params"])
  changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(student["params"]["fusion"]),
                                                      jax.tree.leaves(initial["params"]["fusion"]))]
  assert sum(changed) > len(changed) // 2, changed  # the fusion and its head train


def test_fine_tuned_student_is_the_default_and_a_typo_is_refused(data_dir):
  config = smoke_config(data_dir)
  assert config.student_backbone == "finetune"
  config.student_backbone = "frozen"
  with pytest.raises(ValueError, match="config.student_backbone=.frozen.: must be one of"):
    loop.validate_config(config, ("student",))


def test_torch_pth_initialises_a_backbone_whose_forward_equals_torch(tmp_path):
  """Optional (torch installed): a .pth written by torch, loaded through the config field, gives a JAX R3D-18
  whose eval forward equals the torch network's."""
  torch = pytest.importorskip("torch")
  cfg = models.default_config("tiny")
  cfg.video.widths, cfg.video.blocks, cfg.video.stem_width = (8, 16), (2, 2), 8
  net = _torch_resnet(torch, "r3d_18", tuple(cfg.video.widths), tuple(cfg.video.blocks), 3)
  torch.save(net.state_dict(), tmp_path / "r3d.pth")
  cfg.video.pretrained = str(tmp_path / "r3d.pth")
  clip = np.random.default_rng(0).standard_normal((2, 4, 16, 16, 3)).astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(clip).permute(0, 4, 1, 2, 3)).numpy()
  unimodal = models.build_unimodal(cfg, "video")
  variables = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), jax.eval_shape(
      lambda x: unimodal.init(jax.random.key(0), {"video": x}, train=False), clip))
  variables = pretrained.insert(variables, "visual_backbone", pretrained.load(cfg, "visual_backbone"))
  out = jax.jit(lambda v, x: unimodal.apply(v, {"video": x}, train=False))(variables, clip)
  np.testing.assert_allclose(np.asarray(out.visual), expected, rtol=1e-4, atol=1e-4)
