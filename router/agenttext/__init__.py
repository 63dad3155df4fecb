"""Text for agents, in their own language and time zone.

Everything an agent reads (a delivery's summary, a Telegram card, a
notification mail, a webhook's `text`) says times and reasons the same way:
times in the agent's zone, written by Babel from the CLDR data (`jueves,
10:05`, `Thursday, 10:05 AM`), never as raw ISO strings; the routing
reason ("why you") in words from `words`. Languages with words: English
and Spanish; any other language reads English.
"""

from __future__ import annotations

from router.agenttext.reader import Reader
from router.agenttext.reasons import promises_owed, why_you

__all__ = ["Reader", "promises_owed", "why_you"]
