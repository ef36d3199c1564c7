"""Profile the end-to-end pipeline with py-spy: where the feed and the brain spend their time.

    python -m bench.profile [--rate 100000] [--seconds 5] [--out DIR]

Runs one paced ``bench.e2e_section`` trial (ring pipeline, 300 symbols) with ``py-spy
record`` attached to the feed and the brain processes (sampling, nothing injected), writes
a flame graph (SVG) and the raw folded stacks per process into DIR, and prints the
functions with the most self and inclusive time. py-spy is in the ``bench`` extras
(``make setup-bench``); it needs ptrace rights over the children (root, or
kernel.yama.ptrace_scope = 0).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import e2e_section as e2e
from bench import frames as fr
from bench.harness import log

RATE_HZ = 1000  # samples/s per process


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def top(folded: Path, n: int = 12) -> list[str]:
    """Self and inclusive shares of the hottest frames of a py-spy ``raw`` (folded) file."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        total += k
        frames = stack.split(";")
        self_c[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    if not total:
        return ["(no samples)"]
    out = [f"  self {100 * k / total:5.1f} %  {f}" for f, k in self_c.most_common(n)]
    # frames on every stack (process start-up, the child entry) say nothing: skip them
    inner = [(f, k) for f, k in incl.most_common() if k < total]
    out += [f"  incl {100 * k / total:5.1f} %  {f}" for f, k in inner[:n]]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=int, default=100_000, help="ticks/s (default 100000)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "profile")
    args = p.parse_args(argv)
    exe = py_spy()
    if exe is None:
        log("py-spy not found: make setup-bench (or pip install py-spy)")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    spies: list[tuple[str, subprocess.Popen, Path]] = []

    def attach(pids: dict[str, int]):
        for name, pid in pids.items():
            for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
                path = args.out / f"{name}.{suffix}"
                cmd = [exe, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--duration",
                       str(max(1, int(args.seconds))), "--format", fmt, "--output", str(path),
                       "--nonblocking"]
                spies.append((name, subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                     stderr=subprocess.PIPE), path))

        def finish():
            for _, sp, _ in spies:
                try:
                    sp.wait(args.seconds + 30)
                except subprocess.TimeoutExpired:
                    sp.kill()
                    sp.wait()
        return finish

    try:
        r = e2e.trial("ring", fr.hot(fr.load_all()), args.rate, args.seconds, on_go=attach)
    finally:
        for _, sp, _ in spies:  # ended by pid even when the trial failed
            if sp.poll() is None:
                sp.kill()
                sp.wait()
    log(e2e._describe("ring", r))
    for name, sp, path in spies:
        if path.suffix == ".txt":
            log(f"{name} ({path}):")
            if path.exists():
                log("\n".join(top(path)))
            else:
                err = sp.stderr.read().decode(errors="replace")[-500:] if sp.stderr else ""
                log(f"  py-spy failed: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
