"""Shared helpers for strata's bench/ scripts: locate or build the tree, time
commands, and print RESULT lines in the format DEVELOPERS.md fixes:
RESULT <name> <value> <unit> goal <op> <target> met|short"""
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("STRATA_BUILD_DIR", os.path.join(ROOT, "build"))


def ensure_built(targets):
    """Builds the given CMake targets into BUILD (configuring it if needed). If the
    build fails but an earlier build left the outputs, says so and goes on."""
    if not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                       stdout=subprocess.DEVNULL)
    proc = subprocess.run(["cmake", "--build", BUILD, "-j", str(os.cpu_count() or 2), "--target", *targets],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        if os.path.exists(os.path.join(BUILD, "strata")):
            note("build failed; measuring the binaries an earlier build left in " + BUILD)
        else:
            fail("build failed:\n" + proc.stderr.decode(errors="replace")[-2000:])


def timed(argv, **kwargs):
    """Runs argv and returns (seconds, CompletedProcess)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    return time.perf_counter() - start, proc


def median(values):
    return statistics.median(values)


def result(name, value, unit, op, target):
    ok = {"<=": value <= target, "<": value < target, ">=": value >= target, ">": value > target}[op]
    print(f"RESULT {name} {value:.3f} {unit} goal {op} {target} {'met' if ok else 'short'}", flush=True)


def note(message):
    print(f"# {message}", flush=True)


def fail(message):
    print(f"bench: could not measure: {message}", file=sys.stderr)
    sys.exit(1)
