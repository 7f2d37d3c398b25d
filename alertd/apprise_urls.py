"""Whether Apprise can use an address: the check a subscriber of kind ``apprise`` passes.

Apprise knows some hundred services, each with its own URL scheme and fields
(``tgram://bot-token/chat``, ``line://token/user``, ``x://…``). Only Apprise can say
whether an address is one of them, so registration asks it rather than a pattern
that would drift from the library.
"""

from __future__ import annotations

HELP = "see https://github.com/caronc/apprise/wiki for each service's address"


def apprise_problem(url: str) -> str | None:
    """None when Apprise can send to ``url``; else the sentence for the desk."""
    import apprise

    try:
        plugin = apprise.Apprise.instantiate(url)
    except Exception:  # a library refusing hostile text in its own way: still a refusal
        plugin = None
    if plugin is None:
        scheme = url.partition("://")[0]
        return (f"An apprise subscriber's 'endpoint' must be an address Apprise can send to; "
                f"it does not take this one (scheme {scheme!r}): {HELP}.")  # fmt: skip
    return None
