"""Makes a tree of N small files (sizes and bytes from SEED) in 100 directories: the many-small-files case of
the benchmarks. Usage: python3 benches/lib/small-tree.py ROOT N SEED [MIN MAX [log]]
Sizes are uniform in MIN..MAX bytes (default 1024..16384); with "log", log-uniform (as many files of 1-10 KiB
as of 1-10 MiB: the mixed tree of issue 18 is `ROOT 10000 SEED 1024 10485760 log`). MIN == MAX: all alike."""
import math
import os
import random
import sys

root, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lo, hi = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (1024, 16384)
log = len(sys.argv) > 6 and sys.argv[6] == "log"
rng = random.Random(seed)
for i in range(n):
    d = os.path.join(root, f"d{i % 100:03}")
    os.makedirs(d, exist_ok=True)
    size = int(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if log else rng.randint(lo, hi)
    with open(os.path.join(d, f"f{i:06}.bin"), "wb") as f:
        f.write(rng.randbytes(size))
