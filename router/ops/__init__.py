"""The operator's commands (`omnirouter agents`, `conversations show`, `dlq`, `incidents`).

One module per command, each reading what the daemon wrote (the store, the
dead-letter topic) through the code that wrote it; `router.cli` only wires
arguments to them. Read-only commands load the config with
`load_config(..., channel_secrets=False)`: they start no channel, so they never
need a channel's secrets. Output is for operators and may show personal data;
nothing here logs it.
"""
