"""`make bench`: run every benchmark in turn (each prints its figures and baselines).

Pick some with BENCH_ONLY=gateway,evidence; other BENCH_* and QUANLIAN_BENCH_* variables are passed on.
"""

from __future__ import annotations

import os
import subprocess
import sys

BENCHES = ["gateway", "evidence", "accounts", "chain_credit", "payroll", "collection", "egov",
           "partners", "routing", "statements", "call_cpu"]


def main() -> int:
    only = [b for b in os.environ.get("BENCH_ONLY", "").split(",") if b]
    failed = []
    for name in only or BENCHES:
        print(f"\n##### tests.bench.bench_{name}", flush=True)
        code = subprocess.call([sys.executable, "-m", f"tests.bench.bench_{name}"])
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that did not finish: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
