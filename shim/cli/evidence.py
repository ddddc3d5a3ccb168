"""What a cache did for its runs, read from the cache itself: packages, hits, misses, savings.

Only what the files show is reported. A run's window is from its start (the metrics log)
to the next run of the same cache. In that window an entry that appeared is a download (a
miss: its bytes came over the network); an entry older than the window whose access time
falls in it was read from the cache (a hit). Access times follow the mount's policy: with
`relatime` (the Linux default) a read is recorded the first time after a write (or after
its access time was set back to its write time) and then at most once a day. So each scan
keeps the hits it saw in a ledger (the state dir) and sets the read entries' access times
back: the next read of each is seen again. Hits remain a lower bound (several reads between
two scans count once); with `noatime` none are seen, and hits are reported as unknown
rather than zero. The savings estimate is the bytes of entries read instead of downloaded,
labelled as such.
"""

from __future__ import annotations

import os
from shim.core.records import dataclass, field
from collections.abc import Sequence

from shim.core.managers import ENTRIES

BASIS = ("bytes of cache entries the runs read instead of downloading (file access times; "
         "relatime records a read once a day at most, so this is a lower bound)")


@dataclass(frozen=True)
class Entry:
    size: int
    mtime: float
    atime: float


@dataclass
class RunEvidence:
    ts: float
    hits: int = 0
    misses: int = 0
    hit_bytes: int = 0
    miss_bytes: int = 0


@dataclass
class Evidence:
    entries: int
    runs: list[RunEvidence] = field(default_factory=list)
    atime_seen: bool = True  # False: the filesystem records no reads (noatime): hits unknown
    source: str = "files"
    read: list[str] = field(default_factory=list)  # entries read since written: set back after a scan

    def totals(self) -> dict:
        hits = sum(r.hits for r in self.runs) if self.atime_seen else None
        misses = sum(r.misses for r in self.runs)
        saved = sum(r.hit_bytes for r in self.runs) if self.atime_seen else None
        last = self.runs[-1] if self.runs else None
        return {"entries": self.entries, "runs_observed": len(self.runs), "hits": hits, "misses": misses,
                "hit_rate": (hits / (hits + misses)) if hits is not None and hits + misses else None,
                "downloaded_bytes": sum(r.miss_bytes for r in self.runs),
                "last_run": None if last is None else {"hits": last.hits if self.atime_seen else None,
                                                       "misses": last.misses},
                "savings": None if saved is None else {"bytes": saved, "estimate": True, "basis": BASIS},
                "source": self.source}


def files(root: str, patterns: Sequence[str]) -> list[Entry]:
    """Files (or dirs) matching any pattern, once each: one walk of the cache."""
    return [e for _path, e in _matching(root, patterns)]


def _matching(root: str, patterns: Sequence[str]) -> list[tuple[str, Entry]]:
    deep = [_regex(p) for p in patterns if "**" in p]  # a deep pattern names files only
    flat = [_regex(p) for p in patterns if "**" not in p]
    out = []
    stack = [("", root)]
    while stack:
        rel, here = stack.pop()
        try:
            with os.scandir(here) as it:
                items = list(it)
        except OSError:
            continue
        for item in items:
            sub = f"{rel}{item.name}"
            try:
                is_dir = item.is_dir(follow_symlinks=False)
                hit = any(r.fullmatch(sub) for r in flat) or (not is_dir and any(r.fullmatch(sub) for r in deep))
                if hit:
                    st = item.stat(follow_symlinks=False)
                    out.append((item.path, Entry(st.st_size, st.st_mtime, st.st_atime)))
            except OSError:
                continue
            if is_dir:
                stack.append((sub + "/", item.path))
    return out


def _regex(pattern: str):
    """A glob over relative paths: '*' within one name, '**/' any number of dirs."""
    import re

    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def attribute(entries: Sequence[Entry], starts: Sequence[float], now: float, *, since: float = 0.0,
              earlier: dict | None = None) -> list[RunEvidence]:
    """Each run's misses (entries made in its window) and hits (older entries read in it).

    since: the previous scan, which set read entries' access times back, so only reads after
    it are new; earlier: the hits that scan saw, {str(run start): [hits, bytes]}."""
    starts = sorted(set(starts))
    earlier = earlier or {}
    runs = []
    for i, t in enumerate(starts):
        run = RunEvidence(t, *earlier.get(_tkey(t), (0, 0))[:1])
        run.hit_bytes = earlier.get(_tkey(t), (0, 0))[1]
        end = starts[i + 1] if i + 1 < len(starts) else now
        for e in entries:
            if t <= e.mtime < end:
                run.misses += 1
                run.miss_bytes += e.size
            elif e.mtime < t and max(t, since) <= e.atime < end:
                run.hits += 1
                run.hit_bytes += e.size
        runs.append(run)
    return runs


def _tkey(t: float) -> str:
    return f"{t:.3f}"


def ledger(runs: Sequence[RunEvidence], now: float) -> dict:
    """What to keep for the next scan (see attribute)."""
    return {"scanned": now, "hits": {_tkey(r.ts): [r.hits, r.hit_bytes] for r in runs if r.hits}}


def set_back(paths: Sequence[str]) -> None:
    """Access time back to write time for entries read since: their next read shows again."""
    for path in paths:
        try:
            st = os.stat(path)
            os.utime(path, ns=(st.st_mtime_ns, st.st_mtime_ns))
        except OSError:
            continue


def of_cache(path: str, manager: str, starts: Sequence[float], now: float,
             before: dict | None = None) -> Evidence | None:
    """None when the manager has no counting rule or the path is not readable here.
    before: the ledger of the previous scan (see attribute)."""
    rule = ENTRIES.get(manager)
    if rule is None or not os.access(path, os.R_OK | os.X_OK):
        return None
    counted, evidence = rule
    matched = _matching(path, tuple(counted) + tuple(evidence or ()))
    if evidence:
        wanted = [_regex(p) for p in evidence]
        rel = len(path.rstrip("/")) + 1
        used = [(p, e) for p, e in matched if any(r.fullmatch(p[rel:]) for r in wanted)]
        listed = len(matched) - len(used)
    else:
        used, listed = matched, len(matched)
    before = before or {}
    runs = attribute([e for _p, e in used], starts, now, since=before.get("scanned", 0.0),
                     earlier=before.get("hits"))
    found = Evidence(listed, runs, _records_reads(path))
    found.read = [p for p, e in used if e.atime > e.mtime]
    return found


def _records_reads(path: str) -> bool:
    """False when the filesystem holding `path` is mounted noatime (reads leave no trace)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return True
    real, best, opts = os.path.realpath(path), "", ""
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and (real == fields[4] or real.startswith(fields[4].rstrip("/") + "/")) \
                and len(fields[4]) >= len(best):
            best, opts = fields[4], fields[5]
    return "noatime" not in opts.split(",")
