"""Webhook connector: the agent tool for Slack, Teams or any HTTP tool, both directions.

Modules, as in every connector: `config` (the `webhook:` block), `inbound`
(the tool's signed events checked and turned into `reply` and `command`
envelopes, pure), `outbound` (a delivery as the signed JSON body and headers
POSTed, pure; the signature scheme, both ways), `client` (the POST and what
each HTTP outcome means), `connector` (the contract and the events route),
`errors`. The protocol, for whoever builds the tool's side: docs/webhook.md.

Out: every delivery to an agent whose sink is `{type: webhook, channel: <this
channel>, url: ...}` (the router's `omni.agent.<channel>`) is POSTed as JSON
to the sink's url, signed with the channel's key, with the conversation's
full context and the signed conversation token.

In: `POST <path>` (default `/webhook/<channel>/events`) takes the tool's
signed events: an agent's `reply` (text for the customer) or `command`
(`accept`, `resolve`, `transfer`, `note`, presence...), each with the token of
the delivery it answers. Envelopes: `kind` `reply`/`command`, `direction`
`in`, `channel_type` `webhook`, `id` = `envelope_id(channel, event id)`,
`thread_key` the token's conversation id (else `agent:<agent id>`),
`sender` = `{address: <agent id>, role: agent}`, `command` = `{name, args}`,
`meta` = `{token, event_id}`. The router knows the agent by id on this channel
(the type's sinks have no address, so its agents are named by id).
"""

from connectors.webhook.config import WebhookChannelConfig
from connectors.webhook.connector import build
from router.connector import ConnectorSpec

spec = ConnectorSpec(
    type="webhook",
    description="Agents' tools (Slack, Teams, any HTTP tool): signed JSON deliveries out,"
    " the agents' replies and commands back in.",
    config=WebhookChannelConfig,
    # Many webhook tools are plain incoming webhooks (Slack, Teams) that cannot answer;
    # a tool that POSTs `accept` back says so with the sink's `accepts: true`.
    sink_accepts=False,
    customer_channel=False,
    agent_sink=True,
    # The tool names the agent by id: no address; deliveries go to the sink's url.
    sink_url=True,
    factory=build,
    http_routes=WebhookChannelConfig.http_routes,
)

__all__ = ["WebhookChannelConfig", "spec"]
