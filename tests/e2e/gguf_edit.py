"""Copies a GGUF file with some metadata replaced or added (strings and uint32s), for
tests that need an edited model file (a template that loops, say). GGUF v2/v3: the
header, the key-value pairs, the tensor infos, padding to `general.alignment` (32 by
default), then the data, whose offsets are relative to its start, so only the padding has
to be recomputed."""

import struct

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s

    def value(self, t):
        if t in _SCALARS:
            return self.take(_SCALARS[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")


def _string(b):
    return struct.pack("<Q", len(b)) + b


def _kv(key, value):
    """One key-value pair: a str as a string, an int as a uint32."""
    if isinstance(value, int):
        return _string(key.encode()) + struct.pack("<II", 4, value)
    return _string(key.encode()) + struct.pack("<I", 8) + _string(value.encode())


def with_metadata(src, dst, strings):
    """Writes `dst`: `src` with each key of `strings` set to that value (a str, or an int
    written as a uint32)."""
    data = open(src, "rb").read()
    r = _Reader(data)
    assert r.data[:4] == b"GGUF", "not a GGUF file"
    r.pos = 4
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    kvs = []
    alignment = 32
    for _ in range(n_kv):
        start = r.pos
        key = r.string().decode()
        t = r.take("I")
        v = r.value(t)
        if key == "general.alignment":
            alignment = v
        kvs.append((key, data[start:r.pos]))
    infos_start = r.pos
    for _ in range(n_tensors):
        r.string()
        n_dims = r.take("I")
        r.pos += 8 * n_dims + 4 + 8
    infos = data[infos_start:r.pos]
    data_start = (r.pos + alignment - 1) // alignment * alignment
    out = []
    seen = set()
    for key, raw in kvs:
        if key in strings:
            raw = _kv(key, strings[key])
            seen.add(key)
        out.append(raw)
    for key in strings.keys() - seen:
        out.append(_kv(key, strings[key]))
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(out)) + b"".join(out) + infos
    pad = (-len(head)) % alignment
    with open(dst, "wb") as f:
        f.write(head + b"\0" * pad)
        f.write(data[data_start:])
