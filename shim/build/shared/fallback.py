"""Why a build failed on the shared builder, from the last lines BuildKit printed: pure.

A build the session's engine would have built is retried there once: one that failed
to resolve or pull an image (the engine may hold it, or reach a registry through its
own mirrors, insecure registries or login) or was refused an entitlement the engine may
grant. A build that failed for its own reason (a RUN that exited non-zero, a missing
file, a Dockerfile error) fails as it did, with BuildKit's output and exit code: the
engine would fail it the same way. Only BuildKit's final `ERROR:` line is read, never a
step's own output (a RUN that prints "pull access denied" and fails is the user's).
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\r")
_RESOLVE = re.compile(r"failed to resolve source metadata for (\S+?):? ")
# what the engine may not meet: its own images, registries and credentials, its entitlements
_ENGINES = (
    ("failed to resolve source metadata", "could not resolve"),
    ("pull access denied", "was refused a pull of"),
    ("insufficient_scope", "was refused a pull of"),
    ("toomanyrequests", "was rate-limited pulling"),
    ("httpreadseeker", "could not pull"),
    ("failed to fetch anonymous token", "could not log in to pull"),
    ("failed to authorize", "could not log in to pull"),
    ("entitlement", "was refused an entitlement for"),
)
_USERS = ("did not complete successfully", "failed to compute cache key", "failed to calculate checksum",
          "dockerfile parse error", "failed to read dockerfile", "context canceled")


def last_error(tail: str) -> str | None:
    """BuildKit's final `ERROR: …` line (escape sequences of a terminal display removed)."""
    lines = [_ANSI.sub("", line).strip() for line in tail.splitlines()]
    found = [line for line in lines if line.startswith("ERROR:")]
    return found[-1] if found else None


def retry_reason(tail: str) -> str | None:
    """Why the session's engine may build what the shared builder failed to (one line's
    words), or None: the failure is the build's own, or not known to be the builder's."""
    line = last_error(tail)
    if line is None:
        return None
    low = line.lower()
    if any(word in low for word in _USERS):
        return None
    for word, said in _ENGINES:
        if word in low:
            ref = failed_ref(line)
            return f"the shared builder {said} {ref or 'an image'} ({word})" if word != "entitlement" else \
                f"the shared builder refused an entitlement ({_short(line)})"
    return None


def failed_ref(line: str) -> str | None:
    """The image a resolve failure names (`… for docker.io/ceo/tools:1: …`)."""
    m = _RESOLVE.search(line + " ")
    return m.group(1).rstrip(":") if m else None


def _short(line: str, n: int = 160) -> str:
    text = line.removeprefix("ERROR:").strip()
    return text if len(text) <= n else text[: n - 1] + "…"
