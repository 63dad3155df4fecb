"""Channel connectors: one package per channel type, both directions.

Each package has the same shape: `config.py` (the model for its block in
channels.yaml), intake and sending modules, `errors.py`, and a `spec`
(`router.connector.ConnectorSpec`) registered as an entry point.
"""
