"""`omnirouter simulate`: run a file of events through the real routing code.

Each line of the input is one JSON object (see `router.simulate.events` and
docs/routing.md): an envelope (full, or the short customer form below), an
agent's command or reply, or only a time. An optional `"at"` (ISO 8601) moves
the simulated clock forward first; on the way it stops at every due timer and
every moment a shift or business hours open or close, as the daemon would.
The store is a throwaway SQLite file and nothing reaches a bus: the decisions
and the outputs (messages to customers, deliveries to agents, supervisor
notices, incidents) are reported, then figures per channel (`report`).

Short forms:
  {"at": "...", "channel": "support-email", "from": "ana@example.com",
   "name": "Ana", "thread": "t1", "subject": "...", "text": "..."}
  {"agent": "ana", "command": "resolve", "conversation": "support-email/t1"}
  {"agent": "ana", "command": "transfer", "args": ["billing", "refund"], "conversation": "..."}
  {"agent": "ana", "reply": "Hello!", "conversation": "support-email/t1"}
  {"agent": "ana", "command": "available"}
`conversation` is `channel/thread` or the conversation's reference.
"""

from router.simulate.core import DEFAULT_START, Simulation
from router.simulate.events import SimulationError, read_events
from router.simulate.runner import run, run_compare

__all__ = ["DEFAULT_START", "Simulation", "SimulationError", "read_events", "run", "run_compare"]
