"""Writes SIZE bytes of FASTQ-like text, the same bytes for the same SEED: the compressible data set of the
per-block compression benchmark (issue 20, benches/run-compress.sh).
Usage: python3 benches/lib/fastq.py SIZE SEED > FILE   (SIZE in bytes, or IEC: 64M = 64 MiB, 1G = 1 GiB)

The model (one record = four lines, about 365 bytes):
- header `@A00123:8:H7XYZDSXX:2:<tile>:<x>:<y> 1:N:0:ATCACGTT+GGCTACAA`: an Illumina NovaSeq read name.
  The tile rises slowly, one step every 4000 reads, in NovaSeq order (surface 1-2, swath 1-4, tile 01-78:
  1101, 1102, ... 1178, 1201, ...); x and y are uniform in 1000-30000, independent.
- the read: 150 bases, uniform and independent A, C, G, T, with about 1 base in 500 an 'N' (per chunk of
  CHUNK_READS reads, round(bases / 500) positions drawn uniformly). No repeats, no genome: an LZ compressor finds
  no long matches and only the entropy coder gains (2 bits a base).
- `+`
- 150 qualities, NovaSeq-like binned ('F' = Q37, ':' = Q25, ',' = Q11, '#' = Q2), run-based: each position
  keeps the previous quality with probability 0.85 and otherwise draws one from "FFFFFFFFFFFFF:::,,#" (13/19
  'F', 3/19 ':', 2/19 ',', 1/19 '#'; a draw may give the same quality again). Equivalently: runs of
  geometric length (mean 1/0.15 = 6.7) with independently drawn qualities, which is how it is generated. The
  qualities are 150-character slices of one continuous run stream, so a read's first quality also continues
  the previous read's last run with probability 0.85 (there is no reset at a read's start).
The last record is cut wherever SIZE ends: exactly SIZE bytes are written.

Compressibility: whole-file `zstd -1` of its output is about 4.2x (measured: 8 MiB, seed 1, zstd 1.5.4 CLI:
8388608 -> 2001795 bytes, 4.19x; `zstd -3` 4.29x; `gzip -1` 3.85x). Measured on the same 8 MiB: 1 base in 498
is an 'N'; 92.6% of the qualities equal the one before (the model: 0.85 + 0.15 x 183/361 = 0.926). Real NovaSeq
FASTQ compresses a little better (reads overlap, the genome repeats); this model gives a compressor nothing
but the statistics above.

Speed: stdlib only, about 4 s per 100 MiB on one core of the 2-core VM (~20 s for 512 MiB; a chunk of
CHUNK_READS reads, ~6 MiB, takes 0.22 s): random.Random(SEED) in chunks, `randbytes` mapped to ACGT with
`bytes.translate`, and the quality runs drawn with one `random.choices` call per chunk from the 4 x RUN_MAX
precomputed run strings, weighted by their probability. Same SEED and version of this file, same bytes (a
shorter SIZE gives a prefix of a longer one)."""
import random
import sys

READ_LEN = 150
CHUNK_READS = 16384
TILE_READS = 4000
RUN_MAX = 200  # a run longer than this has probability 0.85^200 ~ 8e-15: left out
P_KEEP = 0.85
N_EVERY = 500
QUAL_DRAW = "FFFFFFFFFFFFF:::,,#"
HEADER = "@A00123:8:H7XYZDSXX:2:{}:{}:{} 1:N:0:ATCACGTT+GGCTACAA\n"
# byte -> base: the low two bits of a uniform byte are uniform.
ACGT = bytes(b"ACGT"[b & 3] for b in range(256))


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper()
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def tile_name(read_index):
    step = read_index // TILE_READS
    tile, swath, surface = step % 78 + 1, (step // 78) % 4 + 1, (step // 312) % 2 + 1
    return f"{surface}{swath}{tile:02d}"


class Qualities:
    """The run stream: a run is one precomputed bytes object (quality x length), drawn with its probability."""

    def __init__(self, rng):
        self.rng = rng
        draw = {q: QUAL_DRAW.count(q) / len(QUAL_DRAW) for q in sorted(set(QUAL_DRAW))}
        self.runs, cum, total = [], [], 0.0
        for q, p_q in draw.items():
            for length in range(1, RUN_MAX + 1):
                total += p_q * (1 - P_KEEP) * P_KEEP ** (length - 1)
                self.runs.append(q.encode() * length)
                cum.append(total)
        self.cum = cum
        self.mean_run = 1 / (1 - P_KEEP)
        self.left = b""

    def take(self, n):
        """The next n qualities of the stream."""
        parts, have = [self.left], len(self.left)
        while have < n:
            k = int((n - have) / self.mean_run * 1.05) + 64
            more = b"".join(self.rng.choices(self.runs, cum_weights=self.cum, k=k))
            parts.append(more)
            have += len(more)
        stream = b"".join(parts)
        self.left = stream[n:]
        return stream[:n]


def chunks(seed):
    rng = random.Random(seed)
    quals = Qualities(rng)
    coords = range(1000, 30001)
    read_index = 0
    while True:
        n_bases = CHUNK_READS * READ_LEN
        seq = bytearray(rng.randbytes(n_bases).translate(ACGT))
        for _ in range(round(n_bases / N_EVERY)):
            seq[rng.randrange(n_bases)] = 78  # 'N'
        seq = bytes(seq)
        qual = quals.take(n_bases)
        xy = rng.choices(coords, k=2 * CHUNK_READS)
        parts = []
        for i in range(CHUNK_READS):
            if i == 0 or (read_index + i) % TILE_READS == 0:
                tile = tile_name(read_index + i)
            a = i * READ_LEN
            parts.append(HEADER.format(tile, xy[2 * i], xy[2 * i + 1]).encode())
            parts.append(seq[a:a + READ_LEN])
            parts.append(b"\n+\n")
            parts.append(qual[a:a + READ_LEN])
            parts.append(b"\n")
        read_index += CHUNK_READS
        yield b"".join(parts)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: python3 benches/lib/fastq.py SIZE_BYTES SEED > FILE")
    left, seed = parse_size(sys.argv[1]), int(sys.argv[2])
    out = sys.stdout.buffer
    for chunk in chunks(seed):
        if left <= 0:
            break
        out.write(chunk[:left])
        left -= len(chunk)
    out.flush()


if __name__ == "__main__":
    main()
