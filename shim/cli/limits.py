"""Size limits for run caches: `run.max_size` (all together) and `managers.NAME.max_size`.

Tools with a limit of their own (ccache, sccache) get it as a variable in the run plan
(shim/core/managers.py SIZE_ENV). Everything else is trimmed here, whole caches, least
recently used first: a package cache is only ever complete or absent for its tool, so
removing a whole one is the trim every tool tolerates (it downloads again). A cache a
running container uses is never removed; nor, in the automatic prune, one used in the
last minutes (the run that started the prune is about to mount it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from shim.core.records import dataclass

from shim.run.upkeep import limits_of

RUN_KINDS = ("volume", "bind")


@dataclass(frozen=True)
class Item:
    name: str
    manager: str
    size: int
    last_used: float | None  # None: never seen used, i.e. the oldest
    busy: bool = False  # in use by a running container (or too recently used to touch)


@dataclass(frozen=True)
class Removal:
    name: str
    manager: str
    size: int
    reason: str  # which limit it was removed for


def plan_trim(items: Sequence[Item], total: int, per_manager: Mapping[str, int]) -> list[Removal]:
    """Which caches to remove, in order, to get each manager under its limit and then all
    under `total` (0 = no limit). Pure; least recently used first, name breaks ties; busy
    ones are never chosen, so a limit they alone exceed stays exceeded."""
    order = sorted(items, key=lambda i: (i.last_used or 0.0, i.name))
    gone: dict[str, Removal] = {}
    for manager, limit in sorted(per_manager.items()):
        if limit > 0:
            mine = [i for i in order if i.manager == manager]
            _trim(mine, limit, gone, f"managers.{manager}.max_size")
    if total > 0:
        _trim(order, total, gone, "run.max_size")
    return list(gone.values())


def _trim(ordered: list[Item], limit: int, gone: dict[str, Removal], reason: str) -> None:
    size = sum(i.size for i in ordered if i.name not in gone)
    for item in ordered:
        if size <= limit:
            return
        if item.busy or item.name in gone:
            continue
        gone[item.name] = Removal(item.name, item.manager, item.size, reason)
        size -= item.size


def configured(config) -> bool:
    total, per = limits_of(config)
    return bool(total or per)


def items_of(rows, *, now: float, grace: float = 0.0) -> list[Item]:
    """Run caches (volumes, bind dirs) as Items; build keys have build.max_size of their own."""
    out = []
    for r in rows:
        if r.kind in RUN_KINDS and r.exists and r.size is not None:
            recent = bool(grace and r.last_used and now - r.last_used < grace)
            out.append(Item(r.name, r.manager, r.size, r.last_used, busy=bool(r.in_use_by) or recent))
    return out


def usage_of(items: Sequence[Item]) -> dict:
    """The estimate the hot path reads: total and per manager, in bytes."""
    per: dict[str, int] = {}
    for i in items:
        per[i.manager] = per.get(i.manager, 0) + i.size
    return {"total": sum(per.values()), "managers": per}


def over(usage: Mapping, total: int, per_manager: Mapping[str, int]) -> bool:
    if total and usage.get("total", 0) > total:
        return True
    return any(limit and usage.get("managers", {}).get(m, 0) > limit for m, limit in per_manager.items())


def trim_run_caches(ctx, rows, human: list[str], *, grace: float = 0.0) -> dict:
    """Remove least recently used run caches until the limits hold; report what was freed.
    Writes the size estimate the run flow reads (run.upkeep)."""
    import time

    from .output import human_size
    from .removal import remove

    total, per = limits_of(ctx.config)
    now = time.time()
    items = items_of(rows, now=now, grace=grace)
    todo = plan_trim(items, total, per) if (total or per) else []
    by_name = {r.name: r for r in rows}
    removed = [rm for rm in todo if remove(ctx, by_name[rm.name])]
    gone = {rm.name for rm in removed}
    before, after = usage_of(items), usage_of([i for i in items if i.name not in gone])
    still = over(after, total, per)
    ctx.state.put("limits", "run", ctx.daemon, {"checked": now, "usage": after, "over": still})
    for rm in removed:
        human.append(f"removed {rm.name} ({human_size(rm.size)}, least recently used; {rm.reason})")
    if total or per:
        human.append(f"run caches: {human_size(before['total'])} -> {human_size(after['total'])}"
                     + (f" (limit {human_size(total)})" if total else "")
                     + ("; still over a limit: the rest is in use" if still else ""))
    return {"max_size": total, "managers_max_size": per, "size_before": before["total"],
            "size_after": after["total"], "freed_bytes": sum(rm.size for rm in removed), "still_over": still,
            "removed": [{"name": rm.name, "manager": rm.manager, "bytes": rm.size, "reason": rm.reason}
                        for rm in removed]}
