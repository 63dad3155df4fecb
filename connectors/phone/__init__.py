"""Phone connector: the PBX's call logs in, as `call` envelopes; it sends nothing.

Modules: `config` (the `phone:` block), `inbound` (CDR rows, JSON call events,
Twilio callbacks → envelopes, pure), `client` (tailing the CDR file; merging
the sources), `connector` (wiring, the HTTP routes and their signatures),
`errors`. Sources, shapes and the mapping: docs/phone.md.
"""

from datetime import timedelta

from connectors.phone.config import PhoneChannelConfig
from connectors.phone.connector import build
from connectors.phone.inbound import normalize_cli
from router.connector import ConnectorSpec

_M, _H = timedelta(minutes=1), timedelta(hours=1)


def _region(settings: PhoneChannelConfig) -> str | None:
    return settings.default_region


spec = ConnectorSpec(
    type="phone",
    description="Call logs from a phone system: every call, and missed calls to return.",
    config=PhoneChannelConfig,
    factory=build,
    normalize=normalize_cli,
    default_capacity=1,  # one call at a time
    # A missed call is returned within the hour.
    default_targets={"urgent": 15 * _M, "high": 30 * _M, "normal": _H, "low": 4 * _H},
    identity_kind="phone",  # the caller's number
    default_region=_region,
    carries_callbacks=True,  # its thread is the customer's number
    http_routes=PhoneChannelConfig.http_routes,
)

__all__ = ["PhoneChannelConfig", "spec"]
