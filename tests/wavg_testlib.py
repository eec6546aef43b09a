"""Shared helpers of the Python CLI tests: soft checks that collect failures, and the closing line
'N passed, N failed' that CTest's log and CI read."""
import sys

failures = []
checks = 0


def check(cond, what):
    """Records one check; prints it when it fails."""
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def finish():
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)
