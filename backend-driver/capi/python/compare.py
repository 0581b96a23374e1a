"""Compares the training runs of run_gpu.sh: losses against PyTorch's caching allocator's at
the same seed, step times, strata's statistics. Usage: python3 compare.py results.jsonl"""

import json
import sys


def main():
    runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    ok = True
    for model in sorted({r["model"] for r in runs}):
        mine = [r for r in runs if r["model"] == model]
        base = [r for r in mine if r["allocator"] == "pytorch"]
        if not base:
            print(f"{model}: no PyTorch run to compare with")
            ok = False
            continue
        ref = base[0]
        print(f"\n{model} (batch {ref['batch']}, {ref['steps']} steps) on {ref['device']}, "
              f"torch {ref['torch']}")
        print(f"{'allocator':<22}{'median ms':>10}{'mean ms':>9}{'vs caching':>11}"
              f"{'losses':>16}  statistics")
        for r in mine:
            diff = max(abs(a - b) for a, b in zip(r["losses"], ref["losses"]))
            same = r["losses"] == ref["losses"]
            match = "identical" if same else f"max diff {diff:.2e}"
            ok = ok and (same or diff < 1e-5)
            name = r["allocator"] if r["allocator"] == "pytorch" else f"strata {r['resource']}"
            if "strata" in r:
                a, res = r["strata"]["allocated"], r["strata"]["reserved"]
                info = (f"allocations {a['total_count']}, peak {a['peak_bytes'] / 2**20:.0f} MiB "
                        f"in use, {res['peak_bytes'] / 2**20:.0f} MiB reserved at peak"
                        + (f" in {res['total_count']} cuMemAlloc" if res["total_count"] else ""))
            else:
                p = r["pytorch"]
                info = (f"allocations {p['allocation_count']}, peak "
                        f"{p['max_memory_allocated'] / 2**20:.0f} MiB in use, "
                        f"{p['max_memory_reserved'] / 2**20:.0f} MiB reserved")
            ratio = r["step_ms_median"] / ref["step_ms_median"]
            print(f"{name:<22}{r['step_ms_median']:>10.2f}{r['step_ms_mean']:>9.2f}"
                  f"{ratio:>11.3f}{match:>16}  {info}")
        print("losses (pytorch):", " ".join(f"{x:.6f}" for x in ref["losses"]))
    print("\nALL LOSSES MATCH" if ok else "\nLOSSES DIFFER")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
