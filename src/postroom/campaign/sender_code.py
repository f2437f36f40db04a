"""A sender's one-time confirmation code, and the mail that carries it.

`new_code()` draws 6 decimal digits from `secrets`. Only `code_digest(key,
sender_id, address, code)` is stored: HMAC-SHA256 under the appliance secret's
sub-key for this purpose (`SecretBox.derive(SENDER_CODES_INFO)`), over the
sender row's id, its address and the code, so a database reader learns nothing
usable and a code issued to one sender cannot confirm another (nor a sender
removed and added again). `code_matches` compares in constant time.
`normalised_code(text)` reads what an operator typed (spaces and dashes
between digit groups are allowed) or returns None when it cannot be a code.

`code_mail(...)` is the message: the code in the Subject and in a plain-text
and a simple HTML part (UTF-8, multipart/alternative), with Date, Message-ID,
From, To, Subject, MIME-Version and `Auto-Submitted: auto-generated` (RFC 3834:
no auto-replies to it). The display name and project name are operator text:
`email.headerregistry.Address` encodes them (RFC 2047) and the HTML escapes them.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

CODE_DIGITS = 6
SENDER_CODES_INFO = b"postroom sender codes"
"""HKDF info string of the sub-key that the stored code digests are made with."""

_TYPED_CODE = re.compile(r"[0-9][0-9 \-]*")


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalised_code(text: str) -> str | None:
    """`text` as the 6 digits it spells ("123 456" and "123-456" too), else None."""
    stripped = text.strip()
    if len(stripped) > 4 * CODE_DIGITS or not _TYPED_CODE.fullmatch(stripped):
        return None
    digits = stripped.replace(" ", "").replace("-", "")
    return digits if len(digits) == CODE_DIGITS else None


def code_digest(key: bytes, sender_id: int, address: str, code: str) -> str:
    """The stored form of `code` for the sender row `sender_id` with `address` (hex)."""
    bound = f"{sender_id}\x00{address}\x00{code}".encode()
    return hmac.new(key, bound, hashlib.sha256).hexdigest()


def code_matches(key: bytes, sender_id: int, address: str, code: str, stored: str) -> bool:
    return hmac.compare_digest(code_digest(key, sender_id, address, code), stored)


def code_mail(
    *,
    author: str,
    author_name: str,
    sender: str,
    display_name: str,
    project: str,
    code: str,
    expires_at: float,
    max_failures: int,
    hostname: str,
    now: float,
) -> bytes:
    """The confirmation mail from `author_name <author>` to `sender` (see module
    docstring), CRLF lines."""
    until = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"postroom sender confirm {sender} {code} --project {project}"
    named = f' as "{display_name}"' if display_name else ""
    text = (
        f"Your confirmation code: {code}\n\n"
        f'Project "{project}" on {hostname} asked to send campaigns from\n'
        f"{sender}{named}.\n\n"
        "If this address is yours and you agree, give the code to the operator\n"
        "of that server, who runs:\n\n"
        f"    {command}\n\n"
        f"The code is valid until {until}; after {max_failures} wrong tries a new\n"
        "one is needed. If you did not expect this message, ignore it: no campaign\n"
        "is sent from this address without the code.\n"
    )
    markup = (
        "<!DOCTYPE html><html><body>"
        f"<p>Your confirmation code: <strong>{code}</strong></p>"
        f"<p>Project &quot;{html.escape(project)}&quot; on {html.escape(hostname)} asked to "
        f"send campaigns from {html.escape(sender + named)}.</p>"
        "<p>If this address is yours and you agree, give the code to the operator of that "
        f"server, who runs:</p><pre>{html.escape(command)}</pre>"
        f"<p>The code is valid until {until}; after {max_failures} wrong tries a new one is "
        "needed. If you did not expect this message, ignore it: no campaign is sent from "
        "this address without the code.</p></body></html>\n"
    )
    message = EmailMessage(policy=SMTP)
    message["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    message["Message-ID"] = make_msgid(domain=hostname)
    message["From"] = Address(author_name, addr_spec=author)
    message["To"] = Address(display_name, addr_spec=sender)
    message["Subject"] = f"{code} is your sender confirmation code"
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable: 7-bit clean whatever the relay on the way supports (no 8BITMIME needed).
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    message.add_alternative(markup, subtype="html", charset="utf-8", cte="quoted-printable")
    for part in message.iter_parts():
        del part["MIME-Version"]  # the email package repeats it in parts; once is the rule
    return message.as_bytes()
