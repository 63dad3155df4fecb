"""Phone connector: signed call records (answered, missed, voicemail) from a PBX webhook."""

from connectors.phone.config import PhoneChannelConfig
from router.connector import ConnectorSpec

spec = ConnectorSpec(
    type="phone",
    description="Call logs from a phone system: every call, and missed calls to return.",
    config=PhoneChannelConfig,
    factory=None,
)

__all__ = ["PhoneChannelConfig", "spec"]
