"""Reading tfds array_record examples without tfds's per-read decoding costs.

tfds decodes every read in full: a zlib-encoded Tensor feature (our clips, physio and audio) through
`zlib.decompress` into a new bytes object, then every other field through several layers of Python. At the
paper's shapes (10 x 112 x 112 clips) that is most of the loader's time. `RecordReader` instead

- inflates the zlib tensors into a buffer it keeps per thread, with libdeflate when the system has it (about
  twice zlib's speed; it releases the GIL, so read threads run it in parallel) and with zlib otherwise;
- decodes the other (small) fields with tfds's own decoders once per record and caches them.

The arrays it returns are the same as tfds's (the tests compare them); the zlib tensors are views of the
per-thread buffers, valid until the same thread reads the next record, so a caller copies them (the loader's
collation does) before reading on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import zlib
from typing import Any

import numpy as np

_LIBDEFLATE_ERRORS = {1: "bad data", 2: "short output", 3: "insufficient space"}


class _Inflater:
  """zlib streams -> preallocated arrays: libdeflate through ctypes when it can be loaded, else zlib."""

  def __init__(self):
    self._local = threading.local()
    self._lib = None
    name = ctypes.util.find_library("deflate")
    if name:
      try:
        lib = ctypes.CDLL(name)
        lib.libdeflate_alloc_decompressor.restype = ctypes.c_void_p
        lib.libdeflate_zlib_decompress.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                                   ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        lib.libdeflate_zlib_decompress.restype = ctypes.c_int
        self._lib = lib
      except (OSError, AttributeError):
        self._lib = None

  @property
  def backend(self) -> str:
    return "libdeflate" if self._lib is not None else "zlib"

  def into(self, data: bytes, out: np.ndarray, what: str) -> None:
    """Inflates the zlib stream `data` into the C-contiguous `out`, which it must fill exactly."""
    if self._lib is None:
      raw = zlib.decompress(data, bufsize=out.nbytes)
      if len(raw) != out.nbytes:
        raise ValueError(f"{what}: zlib data inflates to {len(raw)} bytes, expected {out.nbytes} "
                         f"({out.shape} {out.dtype})")
      out.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
      return
    decompressor = getattr(self._local, "decompressor", None)
    if decompressor is None:  # libdeflate decompressors are not thread-safe: one per thread
      decompressor = self._local.decompressor = self._lib.libdeflate_alloc_decompressor()
      if not decompressor:
        raise MemoryError("libdeflate_alloc_decompressor failed")
    status = self._lib.libdeflate_zlib_decompress(decompressor, data, len(data), out.ctypes.data, out.nbytes, None)
    if status != 0:
      raise ValueError(f"{what}: zlib data does not inflate to {out.shape} {out.dtype} "
                       f"({_LIBDEFLATE_ERRORS.get(status, status)})")


_INFLATER: _Inflater | None = None
_INFLATER_LOCK = threading.Lock()


def inflater() -> _Inflater:
  """The process's inflater (libdeflate is looked up once)."""
  global _INFLATER
  with _INFLATER_LOCK:
    if _INFLATER is None:
      _INFLATER = _Inflater()
    return _INFLATER


def zlib_tensors(features) -> dict[str, tuple[tuple[int, ...], np.dtype]] | None:
  """{field: (shape, dtype)} of a flat tfds FeaturesDict's zlib-encoded, statically shaped Tensor fields, or
  None when the features are not a flat dict of plain features (then the reader is not used)."""
  import tensorflow_datasets as tfds
  if not isinstance(features, tfds.features.FeaturesDict):
    return None
  found = {}
  for key, feature in features.items():
    if isinstance(feature, tfds.features.FeaturesDict) or isinstance(feature, tfds.features.Sequence):
      return None
    if type(feature) is not tfds.features.Tensor or getattr(feature, "_encoding", None) != tfds.features.Encoding.ZLIB:
      continue
    shape = tuple(feature.shape)
    if any(d is None for d in shape):
      continue
    found[key] = (shape, np.dtype(feature.np_dtype))
  return found


class RecordReader:
  """`reader[i]` == `source[i]` of a tfds array_record data source, read faster (see the module docstring).

  Picklable (worker processes rebuild the caches and the per-thread buffers)."""

  def __init__(self, source, tensors: dict[str, tuple[tuple[int, ...], np.dtype]]):
    self._source = source
    self._tensors = dict(tensors)
    self._setup()

  def _setup(self) -> None:
    import tensorflow_datasets as tfds
    from tensorflow_datasets.proto import tf_example_pb2
    self._parse = tf_example_pb2.Example.FromString
    self._skip = {key: tfds.decode.SkipDecoding() for key in self._tensors}
    self._small: dict[int, dict[str, Any]] = {}
    self._local = threading.local()
    self._inflater = inflater()

  def __getstate__(self):
    return {"_source": self._source, "_tensors": self._tensors}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._setup()

  def __len__(self) -> int:
    return len(self._source)

  @classmethod
  def of(cls, source) -> "RecordReader | None":
    """A reader of `source` when it is a tfds array_record data source with zlib tensors, else None."""
    raw = getattr(source, "data_source", None)
    info = getattr(source, "dataset_info", None)
    if raw is None or info is None or getattr(source, "decoders", None):
      return None
    tensors = zlib_tensors(getattr(info, "features", None))
    return cls(source, tensors) if tensors else None

  def _buffer(self, key: str) -> np.ndarray:
    buffers = getattr(self._local, "buffers", None)
    if buffers is None:
      buffers = self._local.buffers = {}
    if key not in buffers:
      shape, dtype = self._tensors[key]
      buffers[key] = np.empty(shape, dtype)
    return buffers[key]

  def __getitem__(self, index: int) -> dict[str, Any]:
    raw = self._source.data_source[index]
    small = self._small.get(index)
    if small is None:  # first read of this record: tfds decodes the small fields (kept) and the field order
      decoded = self._source.dataset_info.features.deserialize_example_np(raw, decoders=self._skip)
      packed = {key: decoded[key] for key in self._tensors}
      self._small[index] = small = {key: (None if key in self._tensors else value) for key, value in decoded.items()}
    else:
      fields = self._parse(raw).features.feature
      packed = {key: fields[key].bytes_list.value[0] for key in self._tensors}
    example = dict(small)
    for key, data in packed.items():
      out = self._buffer(key)
      self._inflater.into(data, out, f"record {index}, field {key!r}")
      example[key] = out
    return example
