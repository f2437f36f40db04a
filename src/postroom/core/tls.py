"""The TLS server context of the submission listeners (587 STARTTLS, 465 implicit TLS).

`server_context(cert, key)` loads `[tls] cert` (PEM chain) and `[tls] key` into
an `ssl.SSLContext` that speaks TLS 1.2 and 1.3 only (RFC 8996 deprecates 1.0
and 1.1; RFC 8314 asks submission to use current TLS) with Python's default,
secure cipher selection. Clients present no certificate (AUTH identifies
them). A file that is missing, unreadable or not a matching PEM pair is a
`StartupError` naming the config key, raised before any listener binds.
"""

from __future__ import annotations

import ssl

from postroom.core.errors import StartupError


def server_context(cert: str, key: str) -> ssl.SSLContext:
    if not cert or not key:
        raise StartupError(
            "[smtp.submission] listeners need a certificate: set [tls] cert and [tls] key"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION  # CRIME
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as error:
        raise StartupError(f"[tls]: cannot read {error.filename}: no such file") from None
    except PermissionError as error:
        raise StartupError(f"[tls]: cannot read {error.filename}: permission denied") from None
    except ssl.SSLError as error:
        raise StartupError(
            f"[tls] cert {cert} / key {key}: not a usable PEM certificate and matching key "
            f"({error.reason or error})"
        ) from None
    return context
