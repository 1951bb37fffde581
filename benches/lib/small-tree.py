"""Makes a tree of N small files (sizes and bytes from SEED) in 100 directories: the many-small-files case of
the benchmarks. Usage: python3 benches/lib/small-tree.py ROOT N SEED [SHAPE | MIN MAX [log]]

SHAPE (issue 18, item 4): `small` (the default: 1-16 KiB), `4k` (every file 4 KiB), `mixed` (sizes spread
evenly in log scale from 1 KiB to 10 MiB, so most files are small and most bytes are in the large ones).
MIN MAX: sizes uniform in MIN..MAX bytes; with "log", log-uniform (the mixed tree is `1024 10485760 log`)."""
import math
import os
import random
import sys

root, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rest = sys.argv[4:]
rng = random.Random(seed)
if rest and not rest[0].isdigit():
    shape = rest[0]
    lo, hi, log = {"small": (1024, 16384, False), "4k": (4096, 4096, False),
                   "mixed": (1024, 10 << 20, True)}.get(shape, (None, None, None))
    if lo is None:
        sys.exit(f"small-tree.py: error: unknown shape {shape!r}; use small, 4k or mixed")
elif len(rest) >= 2:
    lo, hi, log = int(rest[0]), int(rest[1]), len(rest) > 2 and rest[2] == "log"
else:
    lo, hi, log = 1024, 16384, False
# Random bytes cost more than the files' creation at 100k files: slices of one random pool, at a random
# offset, so no two files are alike (no dedup or compression anywhere could help).
pool = rng.randbytes(32 << 20)


def size():
    if log:
        return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return rng.randint(lo, hi)


for i in range(n):
    d = os.path.join(root, f"d{i % 100:03}")
    os.makedirs(d, exist_ok=True)
    s = size()
    at = rng.randrange(0, len(pool) - min(s, len(pool)) + 1)
    data = pool[at:at + s]
    while len(data) < s:
        data += pool[: s - len(data)]
    with open(os.path.join(d, f"f{i:06}.bin"), "wb") as f:
        f.write(data)
