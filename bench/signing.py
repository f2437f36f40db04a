"""DKIM throughput: complete signatures per second, and inbound checks per second.

Purpose: show what issue 4 asks — RSA-2048 signing through OpenSSL
(`postroom.mta.signing.dkim`: dkimpy canonicalises, `cryptography` signs)
against dkimpy's own `dkim.sign` (pure-Python RSA), Ed25519 both ways, all on
one core (one thread, no parallelism); then the whole inbound check pipeline
(`checks.pipeline.run_checks`: SPF for HELO and MAIL FROM, DKIM verification of
two signatures, ARC, DMARC) with a warm DNS cache, through the same
`BlockingLookup` bridge `serve` uses, over a private NSD on loopback.

A "complete signature" is what the relay does per message: parse the message,
canonicalise body and headers, hash, sign, fold the DKIM-Signature field.
The message is a 3 KB newsletter-like text/plain message.

Outputs: one line per run and the medians on stdout, or one JSON object with
`--json`. Needs nsd (installed by `make test-debs`) for the checks part;
`--no-checks` skips it.

    .venv/bin/python bench/signing.py
    .venv/bin/python bench/signing.py --seconds 1 --runs 1 --no-checks
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dkim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from postroom.core.dns import Resolver
from postroom.mailbox.dkim_keys import KeyAlgorithm, dkim_txt_value, generate_key
from postroom.mta.checks.lookup import BlockingLookup
from postroom.mta.checks.pipeline import run_checks
from postroom.mta.signing.dkim import (
    SigningKey,
    load_private_key,
    parse_message,
    sign_headers,
)

DOMAIN = "bench.test"
CLIENT_IP = "127.0.0.9"
BODY = b"".join(
    b"Line %d of the newsletter: offers, news and a link https://bench.test/x/%d\r\n" % (n, n)
    for n in range(40)
)
MESSAGE = (
    b"From: News <news@bench.test>\r\nTo: reader@far.test\r\nSubject: This week\r\n"
    b"Date: Fri, 27 Nov 2026 07:00:00 +0000\r\nMessage-ID: <1@bench.test>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"List-Unsubscribe: <https://bench.test/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n" + BODY
)


def rate(work: Callable[[], object], seconds: float) -> float:
    """Calls per second of `work`, run for about `seconds`."""
    work()  # warm-up (caches, first-use imports)
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            work()
        done += 20
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def signing_cases() -> dict[str, Callable[[], object]]:
    rsa = generate_key(KeyAlgorithm.RSA)
    ed = generate_key(KeyAlgorithm.ED25519)
    rsa_key = SigningKey(
        DOMAIN, "rsa", KeyAlgorithm.RSA, load_private_key(KeyAlgorithm.RSA, rsa.private_pem)
    )
    ed_key = SigningKey(
        DOMAIN, "ed", KeyAlgorithm.ED25519, load_private_key(KeyAlgorithm.ED25519, ed.private_pem)
    )
    ed_seed = ed_key.private_key.private_bytes_raw()  # type: ignore[union-attr]

    def ours(keys: list[SigningKey]) -> Callable[[], object]:
        def sign() -> bytes:
            headers, body = parse_message(MESSAGE)
            return sign_headers(headers, body, keys)

        return sign

    def dkimpy(algorithm: bytes, key: bytes, selector: bytes) -> Callable[[], object]:
        def sign() -> bytes:
            return dkim.DKIM(MESSAGE).sign(
                selector,
                DOMAIN.encode(),
                key,
                signature_algorithm=algorithm,
                canonicalize=(b"relaxed", b"relaxed"),
            )

        return sign

    import base64

    return {
        "rsa2048 postroom (OpenSSL)": ours([rsa_key]),
        "rsa2048 dkimpy (pure Python)": dkimpy(b"rsa-sha256", rsa.private_pem, b"rsa"),
        "ed25519 postroom (OpenSSL)": ours([ed_key]),
        "ed25519 dkimpy (PyNaCl)": dkimpy(b"ed25519-sha256", base64.b64encode(ed_seed), b"ed"),
        "rsa2048+ed25519 postroom": ours([rsa_key, ed_key]),
    }


def checks_case(seconds: float) -> float:
    """Inbound checks per second on one thread, DNS answers from the warm cache."""
    from tests.peers.dns import NsdServer, make_zone

    rsa = generate_key(KeyAlgorithm.RSA)
    ed = generate_key(KeyAlgorithm.ED25519)
    keys = [
        SigningKey(
            DOMAIN, "rsa", KeyAlgorithm.RSA, load_private_key(KeyAlgorithm.RSA, rsa.private_pem)
        ),
        SigningKey(
            DOMAIN,
            "ed",
            KeyAlgorithm.ED25519,
            load_private_key(KeyAlgorithm.ED25519, ed.private_pem),
        ),
    ]
    rsa_txt = dkim_txt_value(KeyAlgorithm.RSA, rsa.public_b64)
    chunks = " ".join(f'"{rsa_txt[i : i + 255]}"' for i in range(0, len(rsa_txt), 255))
    zone = make_zone(
        DOMAIN,
        [
            f'@ IN TXT "v=spf1 ip4:{CLIENT_IP} -all"',
            "mail IN A 127.0.0.9",
            'mail IN TXT "v=spf1 a -all"',
            '_dmarc IN TXT "v=DMARC1; p=reject; rua=mailto:d@bench.test"',
            f"rsa._domainkey IN TXT {chunks}",
            f'ed._domainkey IN TXT "{dkim_txt_value(KeyAlgorithm.ED25519, ed.public_b64)}"',
        ],
        ttl=3600,
    )
    headers, body = parse_message(MESSAGE)
    signed = sign_headers(headers, body, keys) + MESSAGE
    with NsdServer({DOMAIN: zone}) as nsd:
        host, _, port = nsd.nameserver().rpartition(":")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            lookup = BlockingLookup(Resolver([(host, int(port))]), loop)

            def check() -> object:
                verdicts = run_checks(
                    lookup,
                    signed,
                    client_ip=CLIENT_IP,
                    helo=f"mail.{DOMAIN}",
                    mail_from=f"news@{DOMAIN}",
                )
                assert verdicts.dmarc.result.value == "pass", verdicts
                return verdicts

            return rate(check, seconds)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-checks", action="store_true", help="signing only (no nsd needed)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    cases = signing_cases()
    for run in range(args.runs):
        for name, work in cases.items():
            results.setdefault(name, []).append(rate(work, args.seconds))
        if not args.no_checks:
            results.setdefault("inbound checks (warm DNS)", []).append(checks_case(args.seconds))
        if not args.json:
            print(f"run {run + 1}: " + ", ".join(f"{n} {v[-1]:,.0f}/s" for n, v in results.items()))
    medians = {name: statistics.median(values) for name, values in results.items()}
    ratio_rsa = medians["rsa2048 postroom (OpenSSL)"] / medians["rsa2048 dkimpy (pure Python)"]
    if args.json:
        print(json.dumps({"per_second": medians, "rsa_speedup": ratio_rsa}))
        return
    print("medians (one core):")
    for name, value in medians.items():
        print(f"  {name:<32} {value:>9,.0f}/s  {1e6 / value:>8,.0f} µs each")
    print(f"  RSA-2048: postroom/dkimpy = {ratio_rsa:.1f}x")


if __name__ == "__main__":
    main()
