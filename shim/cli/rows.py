"""One cache as the management commands show it (a volume, a bind dir, a build key or mount,
a registry key): its own module so what reads rows (counters, removal) needs no inventory."""

from __future__ import annotations

from shim.core.records import asdict, dataclass, field


@dataclass
class CacheRow:
    name: str
    kind: str  # "volume" | "bind" | "build-key" | "build-mount" | "registry-key"
    manager: str
    size: int | None
    created: float | None
    last_used: float | None
    uses: int = 0
    entries: int | None = None
    in_use_by: list[str] = field(default_factory=list)
    exists: bool = True
    path: str | None = field(default=None, repr=False)  # where its files are, if this host sees them
    evidence: dict | None = None  # `cache stats`: entries, hits, misses, savings (shim.cli.evidence)
    tool_counters: dict | None = None  # `cache stats`: the tool's own hit counters (shim.cli.counters)

    def to_json(self) -> dict:
        from .output import iso_utc
        d = asdict(self)
        d.pop("path")
        d["created"], d["last_used"] = iso_utc(self.created), iso_utc(self.last_used)
        return d
