"""GET /v1/services: where this deployment accepts connections, and where it connects from, for
customers who allow-list (Metronome's service registry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from tally.billing.errors import TallyError


class ServicesUnknown(TallyError):
    """The deployment's public address cannot be told (not configured, or it does not resolve)."""

    status = 503
    kind = "unavailable"


@dataclass(frozen=True, slots=True)
class PublicService:
    name: str
    usage: str  # accepts_connections_at | makes_connections_from
    ips: tuple[str, ...]

    def to_api(self) -> dict:
        return {"name": self.name, "usage": self.usage, "ips": list(self.ips)}


class DeploymentServices:
    def __init__(self, api_url: str | None, region: str | None, egress_ips: tuple[str, ...],
                 addresses_of: Callable[[str], tuple[str, ...]]) -> None:
        self._api_url = api_url
        self._region = region
        self._egress_ips = egress_ips
        self._addresses_of = addresses_of

    def list(self, reached_at: str | None = None) -> list[PublicService]:
        """`reached_at`: the host name this request came in on (API Gateway's domainName), the
        API's public address when the deployment does not name one (TALLY_API_URL)."""
        host = urlsplit(self._api_url or "").hostname or (reached_at or "").split(":")[0] or None
        if not host:
            raise ServicesUnknown("this deployment's API URL is not configured (TALLY_API_URL)")
        try:
            addresses = self._addresses_of(host)
        except OSError as exc:
            raise ServicesUnknown(f"the API's host {host} does not resolve now; retry") from exc
        suffix = f" ({self._region})" if self._region else ""
        services = [PublicService(f"Tally API {host}{suffix}", "accepts_connections_at", addresses)]
        if self._egress_ips:
            services.append(PublicService(f"Tally outbound{suffix}", "makes_connections_from", self._egress_ips))
        return services
