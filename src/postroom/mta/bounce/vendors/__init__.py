"""Vendor knowledge for inbound bounces: where the remote reply sits, and documented codes.

Purpose: the generic readers (dsn_in, prose) find a recipient's diagnostic, but
the diagnostic mixes two voices: the reporting MTA's own wrapper ("Google tried
to deliver your message, but it was rejected by the recipient domain") and the
reply of the server that refused ("550 5.7.1 ... Access denied"). The wrapper's
words are the same for every failure and must not decide the reason. This
package knows how the common MTAs and providers lay out their bounces
(`replies.py`). The error codes vendors document are data, like every other
rule: `vendor_codes.toml` beside classify.py, tried before patterns.toml.

Inputs: diagnostic text (untrusted; only searched with bounded patterns).
Outputs: the remote reply text, and whether the reporter itself found no such address.
Pure, synchronous, no I/O.
"""

from postroom.mta.bounce.vendors.replies import remote_reply, reporter_says_no_such_address

__all__ = ["remote_reply", "reporter_says_no_such_address"]
