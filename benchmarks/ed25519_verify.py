"""The agent's pure-Python Ed25519 verify (agent/ed25519.py) against `cryptography`'s (OpenSSL) on the same input.

The agent verifies one signature per policy fetch (every few minutes, and once more when it loads its cached
policy at start), so this is about knowing the cost, not about a budget. Prints the median time per verify of
each over several runs of N verifies of a policy-sized payload (a few KiB), and the ratio.

    .venv/bin/python benchmarks/ed25519_verify.py [--verifies 200] [--runs 5] [--payload-bytes 4096]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519 as crypto  # noqa: E402

from agent import ed25519  # noqa: E402


def per_verify(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verifies", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--payload-bytes", type=int, default=4096)
    args = ap.parse_args()

    key = crypto.Ed25519PrivateKey.generate()
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    payload = os.urandom(args.payload_bytes)
    signature = key.sign(payload)
    assert ed25519.verify(raw, payload, signature)

    def ours():
        if not ed25519.verify(raw, payload, signature):
            raise AssertionError("agent/ed25519.py refused a good signature")

    def baseline():
        public.verify(signature, payload)  # raises on a bad signature

    mine, base = [], []
    for _ in range(args.runs):
        mine.append(per_verify(ours, args.verifies))
        base.append(per_verify(baseline, args.verifies))
    m, b = statistics.median(mine), statistics.median(base)
    print(f"payload {args.payload_bytes} bytes, {args.verifies} verifies x {args.runs} runs (median per verify)")
    print(f"  agent/ed25519.py (pure Python): {m * 1000:8.3f} ms")
    print(f"  cryptography (OpenSSL):         {b * 1000:8.3f} ms")
    print(f"  ratio ours/cryptography:        {m / b:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
