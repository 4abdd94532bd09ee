"""Run one benchmark on two source trees, interleaved, and print the figures side by side as ratios.

A refactor must leave speed and memory where they were; this is how to show it. Each
tree runs its *own* copy of the benchmark script (private module paths may differ
between revisions) with ``PYTHONPATH`` pointing at that tree, alternating old and new
for ``--rounds`` rounds so that a change of machine load hits both. The figures a
benchmark prints (wall, CPU, peak memory) are pulled out of its output by the patterns
below, and the best (lowest) value of each tree is compared.

    git worktree add /tmp/old v0.3.0          # or: git clone . /tmp/old && git -C /tmp/old checkout REV
    python benchmarks/compare_revisions.py --old /tmp/old --rounds 3 -- \\
        bench_analyze.py --rows 200000 --no-baseline

Not run by pytest.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

NEW = Path(__file__).resolve().parents[1]

#: Figures pulled out of each benchmark's output: name -> (regex with one group, unit).
PATTERNS: dict[str, dict[str, tuple[str, str]]] = {
    "bench_analyze.py": {
        "wall": (r"ours:\s+([\d.]+) s", "s"),
        "cpu": (r"ours:.*?CPU\s+([\d.]+) s", "s"),
        "peak_rss": (r"ours:.*?peak RSS\s+([\d.]+) MB", "MB"),
    },
    "bench_filaments.py": {
        "fit": (r"\n  fit ([\d.]+) s", "s"),
        "cpu": (r"process CPU ([\d.]+) s", "s"),
        "peak_rss": (r"planted[\s\S]*?process peak RSS (\d+) MB", "MB"),
        "null_fit": (r"median fit ([\d.]+) s", "s"),
    },
    "bench_evaluate.py": {
        "regions": (r"SUM_REGION_SECONDS ([\d.]+)", "s"),
    },
    "bench_store.py": {},
}


def _figures(script: str, text: str) -> dict[str, float]:
    if script == "bench_evaluate.py":  # one line per region: "<label>: N s in all, T s for the region"
        total = sum(float(m) for m in re.findall(r": [\d.]+ s in all, ([\d.]+) s for the region", text))
        text += f"\nSUM_REGION_SECONDS {total}"
    out = {}
    for name, (pat, _) in PATTERNS.get(script, {}).items():
        m = re.search(pat, text)
        if m:
            out[name] = float(m.group(1))
    return out


def _run(tree: Path, script: str, args: list[str], log: Path) -> tuple[dict[str, float], float, int]:
    env = dict(os.environ, PYTHONPATH=str(tree), LATENTSCOPE_NO_PROGRESS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(tree / "benchmarks" / script), *args], cwd=tree, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log.write_text(proc.stdout + proc.stderr)
    return _figures(script, proc.stdout), wall, proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", type=Path, required=True, help="the baseline source tree (a checkout of the old revision)")
    p.add_argument("--new", type=Path, default=NEW, help="the tree under test (default: this checkout)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--logs", type=Path, default=Path("bench-out/compare"), help="where each run's output goes")
    p.add_argument("bench", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...], e.g. -- bench_analyze.py --rows 100000")
    a = p.parse_args(argv)
    bench = a.bench[1:] if a.bench[:1] == ["--"] else a.bench
    if not bench:
        p.error("name a benchmark script after --, e.g. -- bench_analyze.py --rows 100000")
    script, args = Path(bench[0]).name, bench[1:]
    for tree in (a.old, a.new):
        if not (tree / "benchmarks" / script).exists():
            p.error(f"{tree}: no benchmarks/{script}")
    a.logs.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for r in range(a.rounds):
        for label, tree in (("old", a.old), ("new", a.new)):
            figs, wall, rc = _run(tree.resolve(), script, args, a.logs / f"{script}.{label}.{r}.log")
            figs["process_wall"] = wall
            runs[label].append(figs)
            print(f"round {r + 1} {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in figs.items())
                  + ("" if rc == 0 else f"  (exit {rc}: see {a.logs})"), flush=True)
    print(f"\n{script} {' '.join(args)}: best of {a.rounds} per tree (lower is better)")
    print(f"  {'figure':<18}{'old':>10}{'new':>10}{'new/old':>9}")
    names = sorted({k for rr in runs.values() for f in rr for k in f})
    for name in names:
        old = [f[name] for f in runs["old"] if name in f]
        new = [f[name] for f in runs["new"] if name in f]
        if old and new:
            unit = PATTERNS.get(script, {}).get(name, ("", "s"))[1]
            print(f"  {name + ' (' + unit + ')':<18}{min(old):>10.2f}{min(new):>10.2f}{min(new) / min(old):>8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
