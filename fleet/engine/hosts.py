"""Docker engines the fleet runs tenants on (FLEET_HOSTS), one client each.

``FLEET_HOSTS`` is ``name=docker-url,...`` with docker SDK URLs (``unix:///...``,
``tcp://host:2376``, ``ssh://user@host``); empty means a single host ``local`` reached through
the usual DOCKER_HOST / default socket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fleet.core.errors import ConfigError, EngineUnavailable, InvalidArgument
from fleet.core.log import log
from fleet.core.names import LOCAL_HOST as LOCAL

# Seconds a host's engine gets to answer before it counts as unreachable (a dead tcp:// host
# must not hang every command for the SDK's default 60 s).
PING_TIMEOUT_S = 5
_HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


@dataclass
class Host:
    name: str
    url: str | None  # None: docker.from_env()
    _client: Any = field(default=None, repr=False)

    @property
    def client(self) -> Any:
        """A docker.DockerClient, connected (and checked) on first use."""
        if self._client is None:
            import docker

            try:
                client = (
                    docker.from_env(timeout=PING_TIMEOUT_S)
                    if self.url is None
                    else docker.DockerClient(self.url, timeout=PING_TIMEOUT_S)
                )
                client.ping()
                client.api.timeout = 120  # answered: normal calls may take longer
            except docker.errors.DockerException:
                raise EngineUnavailable(
                    f"the Docker engine of host {self.name!r} does not answer"
                ) from None
            self._client = client
        return self._client

    def reachable(self) -> bool:
        """Whether the engine answers (connecting on first use); never raises."""
        try:
            self.client  # noqa: B018 - connects and pings
        except EngineUnavailable:
            return False
        return True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def parse_hosts(spec: str) -> list[Host]:
    spec = spec.strip()
    if not spec:
        return [Host(LOCAL, None)]
    hosts: list[Host] = []
    for item in spec.split(","):
        name, sep, url = item.strip().partition("=")
        if not sep or not _HOST_NAME.fullmatch(name) or not url:
            raise ConfigError(f"invalid FLEET_HOSTS entry {item.strip()!r}", "use name=docker-url")
        if any(h.name == name for h in hosts):
            raise ConfigError(f"host {name!r} appears twice in FLEET_HOSTS")
        hosts.append(Host(name, url))
    return hosts


def pick(hosts: list[Host], name: str | None) -> Host:
    """The named host, or the first one."""
    if name is None:
        return hosts[0]
    for h in hosts:
        if h.name == name:
            return h
    raise InvalidArgument(f"unknown host {name!r}", "known: " + ", ".join(h.name for h in hosts))


def reachable(hosts: list[Host]) -> list[Host]:
    """The hosts to look at: all of them with one host (its failure is the error), else the
    ones that answer, so one lost host does not stop the fleet (`fleet hosts` shows it)."""
    if len(hosts) == 1:
        return hosts
    alive = [h for h in hosts if h.reachable()]
    for h in hosts:
        if h not in alive:
            log.warning("host does not answer; skipping it", host=h.name)
    if not alive:
        raise EngineUnavailable("no host of FLEET_HOSTS answers")
    return alive
