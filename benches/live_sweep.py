#!/usr/bin/env python3
"""Traces whose live set is bounded, for `cargo bench --bench peers` (RMM's CSV format).

    python3 benches/live_sweep.py OUTDIR [SEED]

Writes live000064.csv ... live262144.csv: the same kind of workload (sizes log-uniform from
256 B to 1 MiB; allocations until the live set reaches half its bound, then a random live block
freed or a new one allocated with equal chance, never above the bound) at live-set bounds of
64, 1 Ki, 8 Ki, 64 Ki and 256 Ki blocks, so the allocators' metadata goes from fitting in L1 to
far beyond L2. BENCHMARKS.md ("The ratio against the live set") says what it shows.
"""

import math
import os
import random
import sys


def write_trace(path, bound, ops, rng):
    live = []
    addr = 0x7F0000000000
    with open(path, "w") as f:
        f.write("Thread,Time,Action,Pointer,Size,Stream\n")
        for t in range(1, ops + 1):
            free = len(live) >= bound or (len(live) > bound // 2 and rng.random() < 0.5)
            if free:
                i = rng.randrange(len(live))
                ptr, size = live[i]
                live[i] = live[-1]
                live.pop()
                f.write(f"0,{t},free,{ptr:#x},{size},0\n")
            else:
                size = int(math.exp(rng.uniform(math.log(256), math.log(1 << 20))))
                addr += 1 << 21
                live.append((addr, size))
                f.write(f"0,{t},allocate,{addr:#x},{size},0\n")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = sys.argv[1]
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) == 3 else 7)
    os.makedirs(out, exist_ok=True)
    for bound in (64, 1024, 8192, 65536, 262144):
        path = os.path.join(out, f"live{bound:06d}.csv")
        write_trace(path, bound, max(200_000, 8 * bound), rng)
        print(path)


if __name__ == "__main__":
    main()
