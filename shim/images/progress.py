"""What a pull through a cache prints: docker's own lines, with the cache's name replaced
by the user's. `pull` (docker pull, stdout) and `run` (docker run's stderr) print the
lines docker prints without a terminal (every status but the progress bars); `quiet`
prints nothing.
"""

from __future__ import annotations

import sys

from shim.images.route import Route


class Printer:
    def __init__(self, route: Route, style: str):
        from shim.images.pull import user_ref

        self.route, self.style = route, style
        self.out = sys.stdout if style == "pull" else sys.stderr
        self.name = user_ref(route)

    def start(self) -> None:
        if self.style == "run":
            self._line(f"Unable to find image '{self.name}' locally")

    def show(self, msg: dict) -> None:
        if self.style == "quiet":
            return
        status, ident = str(msg.get("status", "")), str(msg.get("id", ""))
        if msg.get("progress") or (msg.get("progressDetail") or {}).get("current") is not None:
            return  # a progress bar: docker draws those only on a terminal
        if ident and status:
            self._line(f"{ident}: {status}")
        elif status:
            self._line(status.replace(self.route.mirror or "", self.name))

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
