"""The Authentication-Results field we add, and the forged ones we remove (RFC 8601).

`authentication_results`: the field's shape (name, authserv-id, CRLF, one result
per folded line, no line over 998 octets), what each result carries (spf for
MAIL FROM and, when checked, HELO; one dkim per signature with header.d/s/a/b,
or dkim=none; dmarc with header.from; arc), comments that can never break out
of their parentheses whatever the reasons say, and the whole field parsed back
with authres to the same results.
`remove_forged`: every field claiming our authserv-id goes (case, comments,
versions and folding notwithstanding), everything else stays byte for byte.
"""

from __future__ import annotations

import authres
import authres.arc
import authres.dmarc
import dns.rdata
import pytest

from postroom.core.dns import DnsNotFound
from postroom.mta.checks.arc import ArcResult, ArcVerdict
from postroom.mta.checks.dkim import DkimResult, DkimVerdict, verify_dkim
from postroom.mta.checks.dmarc import DmarcPolicy, DmarcResult, DmarcVerdict
from postroom.mta.checks.pipeline import AuthVerdicts
from postroom.mta.checks.results import authentication_results, remove_forged
from postroom.mta.checks.spf import SpfResult, SpfVerdict, SpfVerdicts

AUTHSERV_ID = "mail.appliance.test"
MAX_LINE = 998
UNSAFE_REASON = 'bad (key) \\ "quoted" résumé\ttab\r\nnew line \x00 \x7f ) ( \u202e end'


# -- builders -------------------------------------------------------------------------


def spf_verdict(
    result: SpfResult = SpfResult.PASS,
    *,
    identity: str = "mailfrom",
    domain: str = "sender.test",
    sender: str = "bounces@sender.test",
    explanation: str = "sender.test designates 192.0.2.10 as permitted sender",
) -> SpfVerdict:
    return SpfVerdict(result, identity, domain, sender, explanation)


def helo_verdict(result: SpfResult = SpfResult.NONE, domain: str = "") -> SpfVerdict:
    return spf_verdict(
        result,
        identity="helo",
        domain=domain,
        sender=f"postmaster@{domain or '[192.0.2.10]'}",
        explanation="helo checked" if domain else "no domain name to check (RFC 7208 4.3)",
    )


def dkim_verdict(
    domain: str = "author.test",
    *,
    result: DkimResult = DkimResult.PASS,
    selector: str = "sel1",
    algorithm: str = "rsa-sha256",
    header_b: str = "AbCd+012",
    reason: str = "signature verified",
) -> DkimVerdict:
    return DkimVerdict(result, domain, selector, algorithm, header_b, reason)


def dmarc_verdict(
    result: DmarcResult = DmarcResult.PASS,
    *,
    policy: DmarcPolicy | None = DmarcPolicy.REJECT,
    disposition: DmarcPolicy = DmarcPolicy.NONE,
    from_domain: str = "author.test",
    reason: str = "aligned pass: dkim=author.test",
) -> DmarcVerdict:
    return DmarcVerdict(result, from_domain, from_domain, policy, disposition, False, True, reason)


def arc_verdict(
    result: ArcResult = ArcResult.NONE, instances: int = 0, sealer: str = ""
) -> ArcVerdict:
    return ArcVerdict(result, instances, sealer, "no ARC sets" if not instances else "success")


def verdicts(
    *,
    mail_from: SpfVerdict | None = None,
    helo: SpfVerdict | None = None,
    dkim: tuple[DkimVerdict, ...] = (dkim_verdict(),),
    dmarc: DmarcVerdict | None = None,
    arc: ArcVerdict | None = None,
) -> AuthVerdicts:
    return AuthVerdicts(
        spf=SpfVerdicts(
            helo=helo if helo is not None else helo_verdict(),
            mail_from=mail_from if mail_from is not None else spf_verdict(),
        ),
        dkim=dkim,
        dmarc=dmarc if dmarc is not None else dmarc_verdict(),
        arc=arc if arc is not None else arc_verdict(),
        from_fields=1,
    )


def lines_of(field: bytes) -> list[bytes]:
    assert field.endswith(b"\r\n")
    return field[:-2].split(b"\r\n")


def parsed(field: bytes) -> authres.AuthenticationResultsHeader:
    """The field parsed back by authres, after unfolding (RFC 5322 2.2.3)."""
    text = field.decode("ascii").removesuffix("\r\n").replace("\r\n", "")
    return authres.AuthenticationResultsHeader.parse(text)


def results_of(field: bytes, method: str) -> list[authres.BaseAuthenticationResult]:
    return [result for result in parsed(field).results if result.method == method]


def properties(result: authres.BaseAuthenticationResult) -> dict[str, str]:
    return {f"{prop.type}.{prop.name}": prop.value for prop in result.properties}


def comments(field: bytes) -> list[str]:
    """The comments of the field; fails when parentheses nest or do not balance."""
    text = field.decode("ascii")
    found: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            assert depth == 0, f"nested comment at {index}: {text!r}"
            depth, start = 1, index + 1
        elif char == ")":
            assert depth == 1, f"stray ')' at {index}: {text!r}"
            depth = 0
            found.append(text[start:index])
    assert depth == 0, f"unclosed comment: {text!r}"
    return found


# -- shape ----------------------------------------------------------------------------


def test_the_field_names_our_authserv_id_and_ends_with_crlf() -> None:
    field = authentication_results(AUTHSERV_ID, verdicts())
    assert field.startswith(f"Authentication-Results: {AUTHSERV_ID};".encode())
    assert field.endswith(b"\r\n")
    assert not field.endswith(b"\r\n\r\n")
    assert parsed(field).authserv_id == AUTHSERV_ID


def test_one_result_per_folded_line() -> None:
    field = authentication_results(AUTHSERV_ID, verdicts())
    lines = lines_of(field)
    assert [line.split(b"=", 1)[0] for line in lines[1:]] == [
        b"\tspf",
        b"\tdkim",
        b"\tdmarc",
        b"\tarc",
    ]
    assert all(line.endswith(b";") for line in lines[:-1])
    # No bare CR or LF: every line break is a CRLF followed by a fold.
    assert field.count(b"\n") == field.count(b"\r\n") == field.count(b"\r") == len(lines)


def test_ten_signatures_with_long_reasons_stay_under_the_line_limit() -> None:
    signatures = tuple(
        dkim_verdict(
            f"{'sub' * 20}{index}.{'long-label' * 5}.example.test",
            result=DkimResult.PERMERROR,
            selector=f"selector-{'x' * 50}-{index}",
            algorithm="ed25519-sha256",
            header_b=f"{index:08d}",
            reason="r" * 500 + UNSAFE_REASON,
        )
        for index in range(10)
    )
    field = authentication_results(
        AUTHSERV_ID,
        verdicts(
            mail_from=spf_verdict(SpfResult.FAIL, explanation="e" * 200),
            helo=helo_verdict(SpfResult.FAIL, "mx.sender.test"),
            dkim=signatures,
            dmarc=dmarc_verdict(DmarcResult.FAIL, policy=None, reason="d" * 400),
            arc=arc_verdict(ArcResult.FAIL, 3, "forwarder.test"),
        ),
    )
    assert len(field) > 2 * MAX_LINE  # long enough that one line would exceed the limit
    assert max(len(line) for line in lines_of(field)) <= MAX_LINE
    assert len(results_of(field, "dkim")) == 10


def test_an_overlong_signing_domain_cannot_push_a_line_over_the_limit() -> None:
    # d= folded over many short lines in the message: dkimpy and verify_dkim drop the
    # folding whitespace, so the domain would be one 1,500-character token; the verdict
    # keeps at most a domain name's 253 characters.
    labels = "\r\n ".join(["a" * 60 + "."] * 25)
    message = (
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; s=sel;\r\n d="
        + labels.encode()
        + b"evil.test; h=from; bh=AAAA; b=AAAA\r\n"
        + b"From: a@author.test\r\n\r\nbody\r\n"
    )

    def no_keys(name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        raise DnsNotFound(name, rdtype, "no such name")

    signatures = tuple(verify_dkim(no_keys, message))
    assert len(signatures[0].domain) == 253
    field = authentication_results(AUTHSERV_ID, verdicts(dkim=signatures))
    assert max(len(line) for line in lines_of(field)) <= MAX_LINE


# -- what each result carries ---------------------------------------------------------------


def test_the_field_parses_back_to_the_verdicts() -> None:
    field = authentication_results(
        AUTHSERV_ID,
        verdicts(
            mail_from=spf_verdict(SpfResult.SOFTFAIL),
            helo=helo_verdict(SpfResult.PASS, "mx.sender.test"),
            dkim=(
                dkim_verdict("author.test", header_b="Abc+1234"),
                dkim_verdict(
                    "esp.test",
                    result=DkimResult.FAIL,
                    selector="s2",
                    algorithm="ed25519-sha256",
                    header_b="zZ9+xYw0",
                    reason="body hash mismatch",
                ),
            ),
            dmarc=dmarc_verdict(DmarcResult.PASS),
            arc=arc_verdict(ArcResult.PASS, 2, "forwarder.test"),
        ),
    )
    header = parsed(field)
    summary = [(result.method, result.result, properties(result)) for result in header.results]
    assert summary == [
        ("spf", "softfail", {"smtp.mailfrom": "bounces@sender.test"}),
        ("spf", "pass", {"smtp.helo": "mx.sender.test"}),
        (
            "dkim",
            "pass",
            {
                "header.d": "author.test",
                "header.s": "sel1",
                "header.a": "rsa-sha256",
                "header.b": "Abc+1234",
            },
        ),
        (
            "dkim",
            "fail",
            {
                "header.d": "esp.test",
                "header.s": "s2",
                "header.a": "ed25519-sha256",
                "header.b": "zZ9+xYw0",
            },
        ),
        ("dmarc", "pass", {"header.from": "author.test"}),
        ("arc", "pass", {}),
    ]


def test_a_header_b_with_a_slash_is_quoted() -> None:
    # "/" is a tspecial (RFC 2045): the base64 prefix needs a quoted-string then.
    field = authentication_results(AUTHSERV_ID, verdicts(dkim=(dkim_verdict(header_b="ab/+cdef"),)))
    assert b' header.b="ab/+cdef" ' in field


def test_one_dkim_result_per_signature_in_order() -> None:
    signatures = tuple(
        dkim_verdict(f"d{index}.test", selector=f"s{index}", header_b=f"b{index}bbbbbb")
        for index in range(10)
    )
    field = authentication_results(AUTHSERV_ID, verdicts(dkim=signatures))
    found = [properties(result) for result in results_of(field, "dkim")]
    assert [(p["header.d"], p["header.s"], p["header.b"]) for p in found] == [
        (f"d{index}.test", f"s{index}", f"b{index}bbbbbb") for index in range(10)
    ]


def test_no_signature_is_dkim_none() -> None:
    field = authentication_results(AUTHSERV_ID, verdicts(dkim=()))
    (dkim,) = results_of(field, "dkim")
    assert (dkim.result, properties(dkim)) == ("none", {})
    assert b"\tdkim=none;\r\n" in field


def test_a_signature_without_tags_has_no_properties() -> None:
    garbage = DkimVerdict(DkimResult.PERMERROR, "", "", "", "", "missing b'v'=")
    field = authentication_results(AUTHSERV_ID, verdicts(dkim=(garbage,)))
    (dkim,) = results_of(field, "dkim")
    assert (dkim.result, properties(dkim)) == ("permerror", {})
    assert b"header." not in field.split(b"dkim=", 1)[1].split(b";", 1)[0]


@pytest.mark.parametrize(
    ("helo", "spf_results"),
    [
        (helo_verdict(SpfResult.NONE), 1),
        (helo_verdict(SpfResult.NONE, "mx.sender.test"), 1),
        (helo_verdict(SpfResult.PASS, "mx.sender.test"), 2),
        (helo_verdict(SpfResult.FAIL, "mx.sender.test"), 2),
        (helo_verdict(SpfResult.TEMPERROR, "mx.sender.test"), 2),
    ],
)
def test_helo_result_only_when_it_was_checked(helo: SpfVerdict, spf_results: int) -> None:
    field = authentication_results(AUTHSERV_ID, verdicts(helo=helo))
    found = results_of(field, "spf")
    assert len(found) == spf_results
    assert properties(found[0]) == {"smtp.mailfrom": "bounces@sender.test"}
    if spf_results == 2:
        assert (found[1].result, properties(found[1])) == (
            helo.result.value,
            {"smtp.helo": "mx.sender.test"},
        )
    else:
        assert b"smtp.helo" not in field


@pytest.mark.parametrize(
    ("sender", "domain", "shown"),
    [
        ("bounces@sender.test", "sender.test", "bounces@sender.test"),
        ("postmaster@mx.sender.test", "mx.sender.test", "postmaster@mx.sender.test"),
        ('"two words"@sender.test', "sender.test", "sender.test"),
        ("odd;local@sender.test", "sender.test", "sender.test"),
    ],
)
def test_smtp_mailfrom_is_the_address_or_its_domain(sender: str, domain: str, shown: str) -> None:
    mail_from = spf_verdict(domain=domain, sender=sender)
    field = authentication_results(AUTHSERV_ID, verdicts(mail_from=mail_from))
    assert properties(results_of(field, "spf")[0]) == {"smtp.mailfrom": shown}


def test_a_sender_without_a_domain_has_no_smtp_mailfrom() -> None:
    mail_from = spf_verdict(SpfResult.NONE, domain="", sender="localonly", explanation="x")
    field = authentication_results(AUTHSERV_ID, verdicts(mail_from=mail_from))
    spf = results_of(field, "spf")[0]
    assert (spf.result, properties(spf)) == ("none", {})


def test_dmarc_comment_shows_policy_and_disposition() -> None:
    failing = dmarc_verdict(
        DmarcResult.FAIL, policy=DmarcPolicy.REJECT, disposition=DmarcPolicy.QUARANTINE
    )
    field = authentication_results(AUTHSERV_ID, verdicts(dmarc=failing))
    assert b"\tdmarc=fail (p=reject dis=quarantine) header.from=author.test;\r\n" in field


def test_dmarc_without_policy_shows_its_reason_and_no_domain_no_header_from() -> None:
    no_author = dmarc_verdict(
        DmarcResult.PERMERROR, policy=None, from_domain="", reason="no single From address"
    )
    field = authentication_results(AUTHSERV_ID, verdicts(dmarc=no_author))
    (dmarc,) = results_of(field, "dmarc")
    assert (dmarc.result, properties(dmarc)) == ("permerror", {})
    assert "no single From address" in comments(field)


def test_arc_result_with_its_sealer() -> None:
    field = authentication_results(
        AUTHSERV_ID, verdicts(arc=arc_verdict(ArcResult.FAIL, 3, "forwarder.test"))
    )
    # "set(s)" would nest parentheses: the comment keeps its text without them.
    assert "3 sets, sealed by forwarder.test" in comments(field)
    assert [result.result for result in results_of(field, "arc")] == ["fail"]


def test_arc_none_has_no_comment() -> None:
    field = authentication_results(AUTHSERV_ID, verdicts(arc=arc_verdict()))
    assert field.endswith(b"\tarc=none\r\n")


# -- comments ---------------------------------------------------------------------------


def test_comments_cannot_escape_whatever_the_reasons_say() -> None:
    field = authentication_results(
        AUTHSERV_ID,
        verdicts(
            mail_from=spf_verdict(SpfResult.FAIL, explanation=UNSAFE_REASON),
            helo=helo_verdict(SpfResult.FAIL, "mx.sender.test"),
            dkim=(dkim_verdict(result=DkimResult.PERMERROR, reason=UNSAFE_REASON),),
            dmarc=dmarc_verdict(DmarcResult.PERMERROR, policy=None, reason=UNSAFE_REASON),
            arc=arc_verdict(ArcResult.PASS, 1, "sealer)(\\é.test"),
        ),
    )
    assert field.isascii()
    assert b"\\" not in field
    assert b"\x00" not in field and b"\x7f" not in field
    found = comments(field)  # balanced, never nested
    assert len(found) == 5
    for comment in found:
        assert comment.isprintable() and comment.isascii()
        assert not any(char in comment for char in "()\\\r\n\t")
    assert "bad key" in found[0] and "end" in found[0]
    assert [result.method for result in parsed(field).results] == [
        "spf",
        "spf",
        "dkim",
        "dmarc",
        "arc",
    ]


def test_comments_are_bounded() -> None:
    field = authentication_results(
        AUTHSERV_ID,
        verdicts(dkim=(dkim_verdict(result=DkimResult.FAIL, reason="word " * 200),)),
    )
    assert all(len(comment) <= 120 for comment in comments(field))


def test_an_empty_reason_gives_no_empty_comment() -> None:
    field = authentication_results(
        AUTHSERV_ID,
        verdicts(
            mail_from=spf_verdict(explanation="((\\))"),
            dkim=(dkim_verdict(reason=""),),
        ),
    )
    assert b"()" not in field
    assert comments(field) == ["p=reject dis=none"]


# -- remove_forged ------------------------------------------------------------------------

BEFORE = b"Received: from a.test by b.test; Fri, 27 Nov 2026 07:00:00 +0000\r\nSubject: hi\r\n"
AFTER = b"From: Alice <alice@author.test>\r\nTo: bob@appliance.test\r\n"


@pytest.mark.parametrize(
    "field",
    [
        b"Authentication-Results: mail.appliance.test; dkim=pass header.d=paypal.test\r\n",
        b"Authentication-Results: MAIL.Appliance.TEST; dkim=pass\r\n",
        b"authentication-results: mail.appliance.test; spf=pass\r\n",
        b"AUTHENTICATION-RESULTS:mail.appliance.test;dkim=pass\r\n",
        b"Authentication-Results : mail.appliance.test; dkim=pass\r\n",
        b"Authentication-Results:\tmail.appliance.test; dkim=pass\r\n",
        b"Authentication-Results: mail.appliance.test 1; dkim=pass\r\n",
        b"Authentication-Results: mail.appliance.test; none\r\n",
        b"Authentication-Results: mail.appliance.test\r\n",
        b"Authentication-Results: (x) mail.appliance.test; dkim=pass\r\n",
        b"Authentication-Results: (a (b (c)) d) mail.appliance.test; dkim=pass\r\n",
        b"Authentication-Results: mail.appliance.test(comment); dkim=pass\r\n",
        b"Authentication-Results: mail.appliance.test (v) 1 (c); dkim=pass\r\n",
        b"Authentication-Results:\r\n mail.appliance.test;\r\n\tdkim=pass\r\n\theader.d=x.test\r\n",
        b"Authentication-Results: (folded\r\n comment) mail.appliance.test;\r\n dkim=pass\r\n",
        b"Authentication-Results: mail.appliance.test;\r\n"
        + b"".join(b" dkim=pass header.d=d%d.test;\r\n" % n for n in range(30))
        + b" arc=pass\r\n",
    ],
    ids=lambda field: field[:60].decode(),
)
def test_fields_claiming_our_id_are_removed(field: bytes) -> None:
    assert remove_forged(BEFORE + field + AFTER, AUTHSERV_ID) == BEFORE + AFTER


@pytest.mark.parametrize(
    "field",
    [
        b"Authentication-Results: mx.google.test; dkim=pass header.d=author.test\r\n",
        b"Authentication-Results: mail.appliance.test.evil; dkim=pass\r\n",
        b"Authentication-Results: mail.appliance.tester; dkim=pass\r\n",
        b"Authentication-Results: evil.mail.appliance.test; dkim=pass\r\n",
        b"Authentication-Results: (mail.appliance.test) other.test; dkim=pass\r\n",
        b"Authentication-Results: other.test; dkim=pass (mail.appliance.test)\r\n",
        b"Authentication-Results: other.test;\r\n mail.appliance.test; dkim=pass\r\n",
        b"X-Authentication-Results: mail.appliance.test; dkim=pass\r\n",
        b"Authentication-Results-Original: mail.appliance.test; dkim=pass\r\n",
        b"ARC-Authentication-Results: i=1; mail.appliance.test; dkim=pass\r\n",
        b"Subject: Authentication-Results: mail.appliance.test; dkim=pass\r\n",
    ],
    ids=lambda field: field[:60].decode(),
)
def test_other_fields_are_kept_byte_for_byte(field: bytes) -> None:
    headers = BEFORE + field + AFTER
    assert remove_forged(headers, AUTHSERV_ID) == headers


def test_only_ours_go_among_several() -> None:
    ours_1 = b"Authentication-Results: mail.appliance.test; dkim=pass\r\n"
    theirs = b"Authentication-Results: relay.other.test;\r\n\tspf=pass smtp.mailfrom=a@b.test\r\n"
    ours_2 = b"Authentication-Results: (forged)\r\n Mail.Appliance.Test; dmarc=pass\r\n"
    odd = b"X-Odd:  spaced \t value  \r\n\tfolded\r\n"
    headers = ours_1 + BEFORE + theirs + ours_2 + ours_1 + odd + AFTER
    assert remove_forged(headers, AUTHSERV_ID) == BEFORE + theirs + odd + AFTER


def test_a_field_at_the_very_start_and_at_the_very_end() -> None:
    ours = b"Authentication-Results: mail.appliance.test;\r\n dkim=pass\r\n"
    assert remove_forged(ours + AFTER, AUTHSERV_ID) == AFTER
    assert remove_forged(BEFORE + ours, AUTHSERV_ID) == BEFORE
    assert remove_forged(ours, AUTHSERV_ID) == b""


def test_nothing_to_remove_returns_the_section_unchanged() -> None:
    headers = BEFORE + b"X-Binary: \xff\xfe\r\n" + AFTER
    assert remove_forged(headers, AUTHSERV_ID) == headers
    assert remove_forged(b"", AUTHSERV_ID) == b""


def test_the_authserv_id_argument_is_compared_case_insensitively() -> None:
    field = b"Authentication-Results: mail.appliance.test; dkim=pass\r\n"
    assert remove_forged(BEFORE + field, "MAIL.APPLIANCE.TEST") == BEFORE


def test_our_own_field_is_recognised_when_it_comes_back() -> None:
    # A message that leaves and returns (a forward, a bounce) carries our old field.
    ours = authentication_results(AUTHSERV_ID, verdicts())
    assert remove_forged(BEFORE + ours + AFTER, AUTHSERV_ID) == BEFORE + AFTER


def test_the_parser_and_remove_forged_agree_on_the_claimed_id() -> None:
    # What authres (and dkimpy's ARC sealing) reads as our id is what we remove.
    value = "(a (b) c) Mail.Appliance.Test 1; dkim=pass header.d=paypal.test"
    header = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + value)
    assert header.authserv_id.lower() == AUTHSERV_ID
    field = f"Authentication-Results: {value}\r\n".encode()
    assert remove_forged(BEFORE + field, AUTHSERV_ID) == BEFORE


def test_an_escaped_parenthesis_in_a_comment_does_not_hide_our_id() -> None:
    value = r"(x\) y) mail.appliance.test; dkim=pass header.d=paypal.test"
    # RFC 5322 3.2.2: "\)" is a quoted-pair inside the comment; authres reads our id.
    header = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + value)
    assert (header.authserv_id, header.results[0].result) == (AUTHSERV_ID, "pass")
    field = f"Authentication-Results: {value}\r\n".encode()
    assert remove_forged(BEFORE + field + AFTER, AUTHSERV_ID) == BEFORE + AFTER


def test_our_id_as_a_quoted_string_is_removed() -> None:
    field = b'Authentication-Results: "mail.appliance.test"; dkim=pass header.d=paypal.test\r\n'
    assert remove_forged(BEFORE + field + AFTER, AUTHSERV_ID) == BEFORE + AFTER
