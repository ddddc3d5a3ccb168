"""The load that runs beside the build: a project another session just built, unchanged.

A new session's first build of such a project is fully cached on the shared builder
(0.22 s here) and then waited for the image's load into its own engine (~0.08 s), 1.4x
the first session's build; with the load beside the build, 1.14x (docs/benchmarks.md).
When this build reads exactly what the tag's layout was last built from (inputs.py's
fingerprint: arguments, Dockerfile, ignore file, context files), its result is that
image but for a base that moved in its registry or a step the builder's GC made run
again. So that image is loaded nameless while the build runs, and tagged (engine API, a
few ms) once the build reports the same manifest. Any other outcome (another digest, a
failed build) uses none of it: the build's own image is loaded as before, and a nameless
image this load added is removed after. The user's tag never moves before the build
succeeded.

The load steps themselves are builder.py's, handed in as `steps` (builder passes its own
module): builder starts the early load, so importing builder here would be an import circle.
"""

from __future__ import annotations

import threading

from shim.core import proc


class EarlyLoad:
    def __init__(self, built_from: str | None, image: tuple[dict, dict] | None, steps=None):
        self.steps = steps  # id_of, one_load_at_a_time, loaded_since, load_lacking, tag_image, remember_load
        self.built_from = built_from  # what the layout's image was built from (read before the export)
        entry, self.manifest = image or ({}, {})
        self.digest = entry.get("digest")
        self.entry = {k: v for k, v in entry.items() if k != "annotations"}  # no name: no tag moves
        self.fp: str | None = None
        self.known = threading.Event()  # self.fp is this build's fingerprint
        self.loaded = False  # the image is in the engine (loaded here, or it was there)
        self.added = False  # ... or maybe loaded here: this load's to remove when unused
        self.thin = False
        self.thread: threading.Thread | None = None

    def run(self, real: str, inv, run, layout, asking, facts: dict) -> None:
        """The thread's body: the build's fingerprint (a walk of its context, off the build's
        clock), then the guess's load; any failure only means the build's image is loaded after it."""
        try:
            try:
                self.fp = run.fingerprint()
            finally:
                self.known.set()
            if not self.fp or self.fp != self.built_from or not self.digest:
                return
            asking.join()
            if facts.get("ids", [])[:1] == [self.digest]:
                return  # the tag names it already: the build finds the image unchanged
            if self.steps.id_of(real, inv, run, self.digest):
                self.loaded = True
                return
            self.added = True  # from here on it may be in the engine, and was not before
            with self.steps.one_load_at_a_time(run):
                held = facts.get("held", set()) | self.steps.loaded_since(run, facts.get("asked"))
                self.loaded, self.thin = self.steps.load_lacking(real, inv, run, layout, self.entry, self.manifest,
                                                                 held, facts.get("base_diffs"), self.digest)
        except Exception:  # noqa: BLE001 - a guess that failed costs nothing but the usual load
            self.loaded = False

    def fingerprint(self) -> str | None:
        """This build's fingerprint, for the layout to remember after the export."""
        self.known.wait()
        return self.fp

    def finish(self, real: str, inv, run, tags, layout, entry: dict, manifest: dict) -> bool:
        """After a successful build: True when its image is the one loaded (now tagged and
        remembered); False when the caller loads as usual. An unused load stays until that
        load is done (it may leave out layers this one brought), then `discard` removes it."""
        self.join()
        if entry["digest"] == self.digest:
            self.added = False  # the build's own image, whatever came of this load or its tags
        if not self.loaded or entry["digest"] != self.digest:
            run.early = False if self.loaded else None  # metrics: a guess that missed
            return False
        if not all(self.steps.tag_image(real, inv, run, self.digest, t) for t in tags):
            return False  # the usual load tags it (the image is there: it sends little)
        run.loaded, run.thin, run.early = True, self.thin, True
        self.steps.remember_load(run, tags, layout, entry, manifest)
        return True

    def held(self) -> set[str]:
        """The layers the engine holds through this load's image (nothing when it has none)."""
        from shim.build.shared.thinload import layers

        return set(layers(self.manifest)) if self.loaded else set()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def discard(self, real: str, inv, run) -> None:
        """Remove the nameless image this load added (its build made another, or failed):
        in the background, as the engine takes ~0.2 s to delete an image, not the user's to wait."""
        import os

        self.join()
        if not self.added:
            return
        self.added = False
        proc.spawn_background([real, *inv.globals, "image", "rm", self.digest], os.environ)


def start(real: str, inv, run, layout, asking, facts: dict, *, steps) -> EarlyLoad | None:
    """The thread that fingerprints the build and, when it reads what the layout's image was
    built from, loads that image; None when the build is not fingerprinted. Called with the
    layout locked, before the build exports into it."""
    if run.fingerprint is None:
        return None
    early = EarlyLoad(layout.built_from(), layout.image(), steps)
    early.thread = threading.Thread(target=early.run, args=(real, inv, run, layout, asking, facts), daemon=True)
    early.thread.start()
    return early
