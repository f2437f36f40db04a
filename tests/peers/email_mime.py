"""Perl's Email::MIME (Debian's libemail-mime-perl) as a second MIME parser.

`email_mime_parse(path)` → {"type", "subject", "parts": [{"type", "body"}]}:
the top content type, the decoded subject, and each sub-part's type and body
as Email::MIME decodes it (transfer encoding and charset).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

PERL = r"""
use strict; use warnings; use Email::MIME; use JSON::PP;
local $/; open my $fh, '<:raw', $ARGV[0] or die $!; my $email = Email::MIME->new(<$fh>);
my @parts = $email->subparts;
print JSON::PP->new->utf8->canonical->encode({
  type => $email->content_type,
  subject => $email->header('Subject'),
  parts => [ map { { type => $_->content_type, body => $_->body_str } } @parts ],
});
"""


def email_mime_parse(path: Path) -> dict[str, Any]:
    run = subprocess.run(
        ["perl", "-e", PERL, str(path)], capture_output=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    parsed: dict[str, Any] = json.loads(run.stdout)
    return parsed
