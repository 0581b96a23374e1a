"""Checks an RMM CSV log written by strata (STRATA_LOG): the header, every line complete (six
fields, the file ending with a newline), each free matching a live allocation; prints the
counts. Usage: python3 check_log.py LOG.csv"""

import collections
import sys


def main():
    text = open(sys.argv[1]).read()
    lines = text.splitlines()
    problems = []
    if lines[:1] != ["Thread,Time,Action,Pointer,Size,Stream"]:
        problems.append(f"header {lines[:1]}")
    if not text.endswith("\n"):
        problems.append("the last line is cut off")
    actions = collections.Counter()
    live = {}
    for n, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != 6:
            problems.append(f"line {n}: {line!r}")
            continue
        _, _, action, ptr, size, _ = fields
        actions[action] += 1
        if action == "allocate":
            live[ptr] = int(size)
        elif action == "free" and live.pop(ptr, None) != int(size):
            problems.append(f"line {n}: free of {ptr} ({size} B) matches no live allocation")
    print(f"log: {len(lines) - 1} events {dict(actions)}, {len(live)} allocations live at exit, "
          f"{len(problems)} problems")
    for p in problems[:10]:
        print("  ", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
