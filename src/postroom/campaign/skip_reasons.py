"""Why a contact of a campaign's audience gets no message: the reasons a launch's
snapshot records (`campaign_recipients.reason`) and `campaign status` counts.

A module of its own, with no imports, so that `campaign status` (run every few
seconds by `--watch` and by monitoring) does not load the audience machinery.
"""

SKIP_REASONS = ("blocked", "unsubscribed", "invalid", "duplicate")
UNDEFINED_VARIABLE = "undefined_variable"
SNAPSHOT_SKIP_REASONS = (*SKIP_REASONS, UNDEFINED_VARIABLE)  # a launch's skips
