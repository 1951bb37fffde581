"""Makes a tree of N small files (1-16 KiB, sizes and bytes from SEED) in 100 directories: the many-small-files
case of the benchmarks. Usage: python3 benches/lib/small-tree.py ROOT N SEED"""
import os
import random
import sys

root, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
for i in range(n):
    d = os.path.join(root, f"d{i % 100:03}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06}.bin"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16384)))
