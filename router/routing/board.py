"""The agents' live state, held in process (in progress)."""

from __future__ import annotations


class AgentBoard:
    pass
