#!/usr/bin/env python3
"""Convert a model.safetensors (f32 and i64 tensors) to a PyTorch `pytorch_model.bin`, without torch.

Writes PyTorch's zip serialization (archive/data.pkl, archive/data/<i>, archive/version) with
the Python standard library only, so the tests can exercise the `pytorch_model.bin` loading path
on real weights in CI, where torch is not installed. `torch.load(path, weights_only=True)` reads
the result (checked once by hand with torch 2.15).

With --old-bert-names the tensors get the names of Google's original BERT checkpoints as
bert-base-uncased's pytorch_model.bin has them: a `bert.` prefix, and LayerNorm `gamma` / `beta`
instead of `weight` / `bias`.

Usage: safetensors_to_torch_bin.py [--old-bert-names] IN.safetensors OUT.bin
"""
import collections
import json
import pickle
import struct
import sys
import types
import zipfile


def _module(name):
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    return mod


# Stand-ins whose qualified names are what torch's unpickler expects.
_torch = _module("torch")
_utils = _module("torch._utils")


class FloatStorage:
    pass


class LongStorage:
    pass


FloatStorage.__module__ = "torch"
LongStorage.__module__ = "torch"
_torch.FloatStorage = FloatStorage
_torch.LongStorage = LongStorage
STORAGES = {"F32": FloatStorage, "I64": LongStorage}


def _rebuild_tensor_v2(*args):
    raise RuntimeError("only for pickling")


_rebuild_tensor_v2.__module__ = "torch._utils"
_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class _Tensor:
    def __init__(self, key, shape, storage_type):
        self.key, self.shape, self.storage_type = key, shape, storage_type

    def __reduce__(self):
        stride, acc = [], 1
        for dim in reversed(self.shape):
            stride.insert(0, acc)
            acc *= dim
        numel = acc
        storage = _Storage(self.key, numel, self.storage_type)
        return (_rebuild_tensor_v2, (storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))


class _Storage:
    def __init__(self, key, numel, storage_type):
        self.key, self.numel, self.storage_type = key, numel, storage_type


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.storage_type, str(obj.key), "cpu", obj.numel)
        return None


def old_bert_name(name):
    # An encoder's names get the prefix; a task model's (bert.*, classifier.*) already have it.
    if not name.startswith(("bert.", "classifier.")):
        name = "bert." + name
    if "LayerNorm." in name:
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
    return name


def main(src, dst, old_names):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    state = collections.OrderedDict()
    blobs = []
    for i, (name, info) in enumerate(sorted(header.items())):
        if info["dtype"] not in STORAGES:
            raise SystemExit(f"{name}: only F32 and I64 tensors are supported, found {info['dtype']}")
        a, b = info["data_offsets"]
        key = old_bert_name(name) if old_names else name
        state[key] = _Tensor(i, info["shape"], STORAGES[info["dtype"]])
        blobs.append((str(i), data[a:b]))
    buf = __import__("io").BytesIO()
    _Pickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for key, raw in blobs:
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    old = "--old-bert-names" in args
    paths = [a for a in args if a != "--old-bert-names"]
    if len(paths) != 2:
        raise SystemExit(__doc__)
    main(paths[0], paths[1], old)
