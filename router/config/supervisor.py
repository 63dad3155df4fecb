"""The `supervisor:` section: who may see the supervisor page (`/status`)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from router.config.secrets import SecretRef
from router.config.types import Secret, Section, TimeZone, check_timezone, fail


class SupervisorConfig(Section):
    """The supervisor page (docs/status.md); off (404, saying so) without `password_hash`."""

    username: str = Field(
        "supervisor",
        min_length=1,
        pattern=r"^[^:\s]+$",
        description="User name for HTTP Basic authentication (a Bearer token needs none).",
    )
    password_hash: Secret | None = Field(
        None,
        description="The scrypt hash of the supervisor password or token (never the"
        " password itself), from `${VAR}` or `password_hash_file`; make it with"
        " `python -m router.status.password`. The page accepts it as HTTP Basic"
        " (`username` and the password) or as `Authorization: Bearer <password>`.",
        examples=["${OMNI_SUPERVISOR_HASH}"],
    )
    refresh_seconds: int = Field(
        15, ge=5, le=3600, description="How often the page reloads itself."
    )
    timezone: TimeZone | None = Field(
        None,
        description="Time zone of the times on the page and of `today` for incidents"
        " (default: that of `sla.business_hours`, else UTC).",
    )

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        return check_timezone(value)

    @model_validator(mode="after")
    def _hash_is_a_hash(self) -> SupervisorConfig:
        ref = self.password_hash
        if isinstance(ref, SecretRef) and ref.known:
            from router.status.password import parse

            try:
                parse(ref.get_secret_value())
            except ValueError as exc:
                raise fail(type(self).__name__, ("password_hash",), str(exc)) from None
        return self
