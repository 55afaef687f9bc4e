"""Import torchvision ``r3d_18`` / ``resnet18`` weights into our flax variables ({"params", "batch_stats"}).

Nothing is ever downloaded: the user supplies a checkpoint file. A ``.pth`` is a pickle, so it is read with
``torch.load(path, weights_only=True)`` (no code execution) when torch is installed; an ``.npz`` with the
same tensor names (``np.savez(path, **{k: v.numpy() for k, v in sd.items()})``) needs no torch.

Mapping (torch -> flax, channels-last):
  conv weight (O, I, kT, kH, kW) -> kernel (kT, kH, kW, I, O); (O, I, kH, kW) -> (kH, kW, I, O)
  BatchNorm weight/bias -> params scale/bias; running_mean/running_var -> batch_stats mean/var
  r3d_18:   stem.0 -> stem_conv, stem.1 -> stem_bn, layerS.B.conv1.0/.1 -> layerS_B/conv1, bn1,
            layerS.B.conv2.0/.1 -> conv2, bn2, layerS.B.downsample.0/.1 -> downsample_conv, downsample_bn
  resnet18: conv1 -> stem_conv, bn1 -> stem_bn, layerS.B.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}
Ignored on purpose: the classifier ``fc.*`` (our backbones have none; the task head is trained) and
``num_batches_tracked`` (torch's counter, unused with a fixed momentum).

One-channel first conv (spectrogram ResNets): the RGB filters are **summed** over the input-channel axis
(``first_conv="sum"``, default). For a grey image replicated to three channels the summed filter gives
exactly the RGB network's stem response, so the pretrained BatchNorm statistics after the stem stay
calibrated for inputs of the same scale; ``"mean"`` (one third of that response) is offered for inputs
whose scale one wants to treat as one channel of three.

Strict: every used tensor maps onto exactly one target leaf and every target leaf is filled exactly once;
unknown or missing names, or wrong shapes, raise ValueError listing them.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

_BN_PARAMS = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Read a torchvision state dict from ``.pth``/``.pt`` (needs torch; weights_only) or ``.npz``."""
  path = os.fspath(path)
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as data:
      return {k: np.asarray(data[k]) for k in data.files}
  if path.endswith((".pth", ".pt")):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ValueError(f"load_state_dict: reading {path} needs torch; install it or convert the checkpoint "
                       f"to .npz with the same tensor names") from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
      raise ValueError(f"load_state_dict: {path} holds a {type(state).__name__}, expected a state dict")
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
  raise ValueError(f"load_state_dict: {path}: expected a .pth, .pt or .npz file")


def _translate(name: str, arch: str) -> tuple[str, tuple[str, ...], str] | None:
  """torch name -> (collection, flax module path, leaf name), or None when the name is not recognised."""
  parts = name.split(".")
  leaf = parts[-1]
  module = ".".join(parts[:-1])
  stem_conv, stem_bn = ("stem.0", "stem.1") if arch == "r3d_18" else ("conv1", "bn1")
  if module == stem_conv and leaf == "weight":
    return "params", ("stem_conv",), "kernel"
  if module == stem_bn and leaf in _BN_PARAMS:
    collection, flax_leaf = _BN_PARAMS[leaf]
    return collection, ("stem_bn",), flax_leaf
  if arch == "r3d_18":
    pattern = r"layer(\d)\.(\d+)\.(conv1\.0|conv1\.1|conv2\.0|conv2\.1|downsample\.0|downsample\.1)"
    names = {"conv1.0": "conv1", "conv1.1": "bn1", "conv2.0": "conv2", "conv2.1": "bn2",
             "downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}
  else:
    pattern = r"layer(\d)\.(\d+)\.(conv1|bn1|conv2|bn2|downsample\.0|downsample\.1)"
    names = {"conv1": "conv1", "bn1": "bn1", "conv2": "conv2", "bn2": "bn2",
             "downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}
  match = re.fullmatch(pattern, module)
  if match is None:
    return None
  block = f"layer{match.group(1)}_{match.group(2)}"
  sub = names[match.group(3)]
  if sub.endswith("conv") or sub in ("conv1", "conv2"):
    return ("params", (block, sub), "kernel") if leaf == "weight" else None
  if leaf in _BN_PARAMS:
    collection, flax_leaf = _BN_PARAMS[leaf]
    return collection, (block, sub), flax_leaf
  return None


def _convert_tensor(name: str, value: np.ndarray, target_shape: tuple[int, ...], is_kernel: bool,
                    first_conv: str) -> np.ndarray:
  value = np.asarray(value, dtype=np.float32)
  if is_kernel:
    # torch (O, I, *k) -> flax (*k, I, O)
    value = np.transpose(value, tuple(range(2, value.ndim)) + (1, 0))
    if value.shape[-2] != target_shape[-2] and target_shape[-2] == 1 and value.ndim == len(target_shape):
      if first_conv not in ("sum", "mean"):
        raise ValueError(f"convert: first_conv must be 'sum' or 'mean', got {first_conv!r}")
      value = value.sum(axis=-2, keepdims=True) if first_conv == "sum" else value.mean(axis=-2, keepdims=True)
  if value.shape != tuple(target_shape):
    raise ValueError(f"convert: tensor {name!r} converts to shape {value.shape}, but the target leaf expects "
                     f"{tuple(target_shape)}")
  return value


def torchvision_to_flax(state_dict: Mapping[str, Any], target: Mapping[str, Any], *, arch: str,
                        first_conv: str = "sum", ignore_prefixes: tuple[str, ...] = ("fc.",)) -> dict:
  """Convert a torchvision state dict into variables shaped like ``target``.

  Args:
    state_dict: torch name -> array (numpy or torch tensors), e.g. from :func:`load_state_dict`.
    target: the backbone's variables {"params", "batch_stats"} (arrays or jax.ShapeDtypeStruct, e.g. from
      ``jax.eval_shape(backbone.init, ...)``): R3D18 for arch "r3d_18", ResNet2D for "resnet18".
    arch: "r3d_18" or "resnet18".
    first_conv: "sum" or "mean" over the RGB filters when the target's first conv has one input channel.
    ignore_prefixes: torch names skipped on purpose (the classifier).

  Returns:
    {"params": ..., "batch_stats": ...} nested dicts of float32 numpy arrays, same tree as ``target``.

  Raises:
    ValueError: unknown or unused torch tensors, target leaves left unfilled or filled twice, shape
      mismatches. The message lists every offending name.
  """
  if arch not in ("r3d_18", "resnet18"):
    raise ValueError(f"torchvision_to_flax: arch must be 'r3d_18' or 'resnet18', got {arch!r}")
  flat_target = {}
  for collection in ("params", "batch_stats"):
    for path, leaf in traverse_util.flatten_dict(dict(target.get(collection, {}))).items():
      flat_target[(collection,) + tuple(path)] = leaf
  filled: dict[tuple[str, ...], np.ndarray] = {}
  unknown, duplicated = [], []
  for name, value in state_dict.items():
    if name.startswith(tuple(ignore_prefixes)) or name.endswith(_IGNORED_SUFFIXES):
      continue
    translated = _translate(name, arch)
    key = None if translated is None else (translated[0],) + translated[1] + (translated[2],)
    if key is None or key not in flat_target:
      unknown.append(name if key is None else f"{name} -> {'/'.join(key)}")
      continue
    if key in filled:
      duplicated.append(name)
      continue
    value = value.detach().cpu().numpy() if hasattr(value, "detach") else value
    filled[key] = _convert_tensor(name, value, tuple(flat_target[key].shape), key[-1] == "kernel", first_conv)
  missing = sorted("/".join(k) for k in flat_target if k not in filled)
  if unknown or duplicated or missing:
    raise ValueError(
        f"torchvision_to_flax ({arch}): state dict and target do not match one-to-one.\n"
        f"  torch tensors with no target leaf ({len(unknown)}): {unknown}\n"
        f"  torch tensors mapping onto an already filled leaf ({len(duplicated)}): {duplicated}\n"
        f"  target leaves left unfilled ({len(missing)}): {missing}")
  out: dict[str, Any] = {}
  for collection in ("params", "batch_stats"):
    leaves = {k[1:]: v for k, v in filled.items() if k[0] == collection}
    if leaves or collection in target:
      out[collection] = traverse_util.unflatten_dict(leaves)
  return out


def insert_backbone(variables: Mapping[str, Any], path: tuple[str, ...] | str,
                    backbone_variables: Mapping[str, Any]) -> dict:
  """Return ``variables`` with the subtree at ``path`` (e.g. "visual_backbone" or
  ("privileged_backbone", "resnet")) replaced by ``backbone_variables``, in both collections.

  Raises ValueError when the subtree is absent or its leaves' names or shapes differ.
  """
  path = (path,) if isinstance(path, str) else tuple(path)
  out = {}
  for collection, tree in variables.items():
    flat = dict(traverse_util.flatten_dict(dict(tree)))
    if collection in backbone_variables:
      new = traverse_util.flatten_dict(dict(backbone_variables[collection]))
      old = {k[len(path):]: v for k, v in flat.items() if k[:len(path)] == path}
      if set(old) != set(new):
        raise ValueError(f"insert_backbone: {collection}/{'/'.join(path)} has leaves "
                         f"{sorted('/'.join(k) for k in old)}, the converted backbone "
                         f"{sorted('/'.join(k) for k in new)}")
      for k, v in new.items():
        if tuple(old[k].shape) != tuple(v.shape):
          raise ValueError(f"insert_backbone: {collection}/{'/'.join(path + k)} expects shape "
                           f"{tuple(old[k].shape)}, got {tuple(v.shape)}")
        flat[path + k] = v
    out[collection] = traverse_util.unflatten_dict(flat)
  return out


def import_torchvision(variables: Mapping[str, Any], path: tuple[str, ...] | str,
                       checkpoint: str | os.PathLike | Mapping[str, Any], *, arch: str,
                       first_conv: str = "sum") -> dict:
  """Load a torchvision checkpoint (file or state dict) into the backbone at ``path`` of ``variables``.

  Example: ``import_torchvision(teacher_vars, "visual_backbone", "r3d_18-b3b3357e.pth", arch="r3d_18")``;
  ``import_torchvision(teacher_vars, ("privileged_backbone", "resnet"), "resnet18.npz", arch="resnet18")``.
  """
  path = (path,) if isinstance(path, str) else tuple(path)
  state_dict = load_state_dict(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
  target = {}
  for collection, tree in variables.items():
    sub = tree
    for p in path:
      if p not in sub:
        raise ValueError(f"import_torchvision: no module {'/'.join(path)} in variables[{collection!r}]")
      sub = sub[p]
    target[collection] = sub
  converted = torchvision_to_flax(state_dict, target, arch=arch, first_conv=first_conv)
  return insert_backbone(variables, path, converted)
