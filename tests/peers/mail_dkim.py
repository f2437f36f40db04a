"""Perl Mail::DKIM (Debian's libmail-dkim-perl) as a DKIM verifier peer.

`mail_dkim_verify(nsd, message)` runs Mail::DKIM::Verifier over the message,
with its Net::DNS resolver pointed at a test NSD (keys are looked up there and
nowhere else), and returns its version, whether it knows ed25519-sha256, and
one verdict per signature.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from tests.peers.dns import NsdServer

TIMEOUT_S = 60

PERL_VERIFY = r"""
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::Signature;
use Net::DNS::Resolver;

my ($ip, $port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => [$ip], port => $port, recurse => 0,
    udp_timeout => 5, tcp_timeout => 5, retry => 2,
));
my $ed25519 = Mail::DKIM::Signature->new->get_algorithm_class('ed25519-sha256');
print "version\t$Mail::DKIM::Verifier::VERSION\n";
print "ed25519\t", (defined $ed25519 ? "yes" : "no"), "\n";

binmode STDIN;
my $message = do { local $/; <STDIN> };
my $dkim = Mail::DKIM::Verifier->new();
$dkim->PRINT($message);
$dkim->CLOSE;
for my $sig ($dkim->signatures) {
    print join("\t", "signature", map { $_ // '' } $sig->domain, $sig->selector,
               $sig->algorithm, $sig->result, $sig->result_detail), "\n";
}
"""


@dataclass(frozen=True)
class PerlVerdict:
    domain: str
    selector: str
    algorithm: str
    result: str
    detail: str


@dataclass(frozen=True)
class PerlReport:
    version: str
    ed25519: bool
    signatures: list[PerlVerdict]


def mail_dkim_verify(nsd: NsdServer, message: bytes) -> PerlReport:
    done = subprocess.run(
        ["perl", "-e", PERL_VERIFY, nsd.address, str(nsd.port)],
        input=message,
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    output = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, f"Mail::DKIM verifier failed:\n{output}{done.stderr.decode()}"
    fields = [line.split("\t") for line in output.splitlines()]
    info = {row[0]: row[1] for row in fields if row[0] in ("version", "ed25519")}
    signatures = [PerlVerdict(*row[1:]) for row in fields if row[0] == "signature"]
    return PerlReport(info["version"], info["ed25519"] == "yes", signatures)
