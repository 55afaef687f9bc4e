"""Backbones that start from a torchvision weight file named in the model config.

Fields (`cfg = config.model`; "" = random initialisation):
  video.pretrained           torchvision `r3d_18` weights (Kinetics-400: r3d_18-b3b3357e.pth) for the R3D-18
                             (video.arch "r3d18")
  privileged_net.pretrained  torchvision `resnet18` weights (ImageNet: resnet18-f37072fd.pth) for the one-channel
                             ResNet-18 of the physio spectrogram or of the audio log-mel (privileged_backbone
                             "resnet2d18"); the RGB filters of the first convolution are summed (convert.py)
The file is an `.npz` with torchvision's tensor names (torch-free; `python -m pkdot_jax.models.convert IN.pth
OUT.npz` writes it once) or the `.pth` / `.pt` itself when torch is installed (read with weights_only, so the
pickle cannot run code). The classifier `fc.*` is ignored. Which stage reads the file is the trainer's choice
(train/loop.py: the first stage that builds the backbone; later stages graft it).

Every problem is one ValueError line naming the field, the file and, for a tensor, its name and both shapes:
`check` runs them all before a run writes anything.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from pkdot_jax import errors
from pkdot_jax.models import convert, factory


@dataclasses.dataclass(frozen=True)
class Backbone:
  group: str               # config.model.<group>.pretrained
  arch: str                # torchvision architecture of the file
  path: tuple[str, ...]    # where the torchvision network sits inside the model's sub-tree of that name


BACKBONES = {"visual_backbone": Backbone("video", "r3d_18", ("visual_backbone",)),
             "privileged_backbone": Backbone("privileged_net", "resnet18", ("privileged_backbone", "resnet"))}


def field(name: str) -> str:
  return f"config.model.{BACKBONES[name].group}.pretrained"


def configured(cfg: ml_collections.ConfigDict) -> dict[str, str]:
  """{sub-tree name: file} of the backbones whose config names a weight file."""
  out = {}
  for name, backbone in BACKBONES.items():
    path = cfg[backbone.group].get("pretrained", "") or ""
    if path:
      out[name] = os.path.expanduser(str(path))
  return out


def backbone_target(cfg: ml_collections.ConfigDict, name: str) -> dict[str, Any]:
  """Shapes of the torchvision network inside the configured backbone (eval_shape: nothing is allocated)."""
  if name == "visual_backbone":
    arch = cfg.video.get("arch", "r3d18")
    if arch != "r3d18":
      raise errors.ConfigError(f"{field(name)}: torchvision weights fit config.model.video.arch='r3d18' only, "
                               f"got {arch!r}")
    module, key = factory.build_video_backbone(cfg), "video"
  else:
    if cfg.privileged_backbone != "resnet2d18":
      raise errors.ConfigError(f"{field(name)}: torchvision weights fit config.model.privileged_backbone='resnet2d18' "
                               f"only, got {cfg.privileged_backbone!r}")
    module, key = factory.build_privileged_backbone(cfg), cfg.privileged
  example = jax.ShapeDtypeStruct((1, *cfg.input_shapes[key]), jnp.float32)
  variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), example)
  inner = BACKBONES[name].path[1:]
  out = {}
  for collection, tree in variables.items():
    for part in inner:
      tree = tree[part]
    out[collection] = tree
  return out


def load(cfg: ml_collections.ConfigDict, name: str) -> dict[str, Any]:
  """The converted variables {"params", "batch_stats"} (numpy) of the torchvision network of backbone `name`
  from its configured file; ValueError in one line when the file is missing, unreadable or does not fit."""
  path = configured(cfg).get(name)
  if path is None:
    raise errors.ConfigError(f"{field(name)} is empty")
  where = f"{field(name)}={path}"
  if not os.path.isfile(path):
    raise errors.ConfigError(f"{where}: no such file")
  target = backbone_target(cfg, name)
  try:
    state = convert.load_state_dict(path)
  except ValueError as e:
    raise errors.ConfigError(f"{where}: {' '.join(str(e).split())}") from None
  except Exception as e:  # pylint: disable=broad-except  (a truncated zip, a pickle that is not a state dict)
    raise errors.ConfigError(f"{where}: cannot be read as a weight file ({type(e).__name__}: "
                             f"{' '.join(str(e).split())})") from None
  arch = BACKBONES[name].arch
  problem = convert.first_mismatch(state, target, arch=arch)
  if problem:
    raise errors.ConfigError(f"{where}: {problem}")
  converted = convert.torchvision_to_flax(state, target, arch=arch)
  for key, value in traverse_util.flatten_dict(converted).items():  # NaN would only surface as a NaN loss
    if not np.all(np.isfinite(value)) or (key[-1] == "var" and np.any(value < 0)):
      what = "non-finite values" if not np.all(np.isfinite(value)) else "negative running variances"
      raise errors.ConfigError(f"{where}: tensor {convert.torch_name(key, arch)!r} holds {what}")
  return converted


def check(cfg: ml_collections.ConfigDict, names=None) -> None:
  """Loads and matches every configured file (or those of `names`) against the configured backbones."""
  for name in configured(cfg) if names is None else names:
    load(cfg, name)


def insert(variables: dict[str, Any], name: str, converted: dict[str, Any]) -> dict[str, Any]:
  """`variables` of a model with backbone `name` replaced by `converted` (both collections)."""
  return convert.insert_backbone(variables, BACKBONES[name].path, converted)


def record(cfg: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
  """{field: {"path", "sha256", "bytes"}} of the configured files that exist (what run_info.json keeps)."""
  out = {}
  for name, path in configured(cfg).items():
    if os.path.isfile(path):
      out[field(name)] = {"path": os.path.abspath(path), "sha256": convert.sha256(path),
                          "bytes": os.path.getsize(path)}
  return out
