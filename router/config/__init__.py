"""The configuration: `config/channels.yaml`, its typed model, and its checks.

    config = load_config("config/channels.yaml")   # raises ConfigError
    config.bus.backend, config.channels[0].settings, ...

Every operator-facing setting lives in that one file. Secrets come from
`${ENV_VAR}` or `*_file` paths and are `SecretRef`s. The reference doc,
docs/configuration.md, is generated from the model by `router.config.reference`.
"""

from router.config.channels import ChannelConfig
from router.config.infra import (
    BlobsConfig,
    BusConfig,
    EmbeddedBusConfig,
    HttpConfig,
    KafkaConfig,
    LoggingConfig,
    StoreConfig,
)
from router.config.loader import check, load_config, parse_config
from router.config.model import Config
from router.config.people import (
    AgentConfig,
    BusinessHoursConfig,
    QueueConfig,
    SinkConfig,
    SkillConfig,
    TimeRange,
)
from router.config.routing import (
    ComplaintsConfig,
    MatchConfig,
    RoutingConfig,
    RuleConfig,
    SlaConfig,
    TargetsConfig,
    ThenConfig,
)
from router.errors import ConfigError, ConfigProblem

__all__ = [
    "AgentConfig",
    "BlobsConfig",
    "BusConfig",
    "BusinessHoursConfig",
    "ChannelConfig",
    "ComplaintsConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "EmbeddedBusConfig",
    "HttpConfig",
    "KafkaConfig",
    "LoggingConfig",
    "MatchConfig",
    "QueueConfig",
    "RoutingConfig",
    "RuleConfig",
    "SinkConfig",
    "SkillConfig",
    "SlaConfig",
    "StoreConfig",
    "TargetsConfig",
    "ThenConfig",
    "TimeRange",
    "check",
    "load_config",
    "parse_config",
]
