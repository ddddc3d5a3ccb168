"""What every management command needs: the environment, config, state and docker."""

from __future__ import annotations

import os
from shim.core.records import dataclass, field
from pathlib import Path

from shim.core import proc
from shim.core.config import Config, ConfigError, load
from shim.core.daemon import daemon_key
from shim.core.realdocker import find_real
from shim.core.state import State, endpoint_id, state_dir

from .output import CliError


@dataclass
class Ctx:
    environ: dict = field(default_factory=lambda: dict(os.environ))
    everyone: bool = False  # management reaches every installation's caches, not only this one's

    def __post_init__(self):
        self.real = find_real("docker", self.environ)
        self.state = State(state_dir(self.environ))
        self.endpoint = endpoint_id(None, None, self.environ)
        self.daemon = daemon_key(None, None, self.environ)  # what the run flow remembers volumes by
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load(self.environ, os.getcwd())
            except ConfigError as exc:
                raise CliError(str(exc)) from None
        return self._config

    def docker(self, *args: str, timeout: float = 60) -> proc.Result:
        if not self.real:
            return proc.Result(("docker", *args), 127, "", "no real docker found on PATH")
        return proc.run_docker(self.real, list(args), timeout=timeout, env=self.environ)

    @property
    def store_root(self) -> Path:
        return Path(self.config["build.store"])

    def audit(self, action: str, target: str, **extra) -> None:
        self.state.append_log("audit", {"action": action, "target": target, **extra})
