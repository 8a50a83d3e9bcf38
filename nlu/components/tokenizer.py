"""Rasa component: one tokenizer for every script a worker may type.

- Thai has no spaces between words: Thai runs are segmented with PyThaiNLP's ``newmm``
  dictionary-based maximal matching (its dictionary ships inside the package).
- Burmese has no spaces between words either: Myanmar runs are split into syllables with the
  ``sylbreak`` rules (Ye Kyaw Thu), which need no dictionary and work on any Unicode Burmese.
- Everything else (Latin, Bengali, Devanagari) is split on letters, marks and digits with the
  ``regex`` module, so that Bengali and Devanagari vowel signs and viramas (category ``M``) stay
  inside their words; Python's ``re`` would split them off.

Each token's ``lemma`` is its lower-cased form, and for Latin letters its form without
diacritics, so "lương" and "luong" are one feature for the featurizers (``use_lemma``).
"""

from __future__ import annotations

import functools
from typing import Any

import regex
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.tokenizers.tokenizer import Token, Tokenizer
from rasa.shared.nlu.training_data.message import Message

from nlu.script import fold_latin

# Runs of one script: Thai, Myanmar, or anything else that makes up words.
_RUNS = regex.compile(
    r"(?P<thai>[\p{Thai}]+)|(?P<mymr>[\p{Myanmar}]+)|(?P<word>[\p{L}\p{M}\p{N}]+(?:['’][\p{L}]+)*)"
    r"|(?P<symbol>\p{So})"  # emoji and symbols: "👍" says yes, "😭" says something too
)
# Burmese syllable break (sylbreak): before a consonant not stacked under a virama (U+1039) and
# not killed by an asat (U+103A), and before independent vowels, digits and punctuation.
_MY_BREAK = regex.compile(
    r"(?<!\u1039)([\u1000-\u1021])(?![\u103a\u1039])|([\u1023-\u102a\u103f\u104c-\u104f\u1040-\u104b])"
)
# Letters typed three or more times for emphasis ("ช่วยด้วยยยย").
_REPEATS = regex.compile(r"(\p{L})\1{2,}")


@functools.lru_cache(maxsize=1)
def _thai_tokenize():
    from pythainlp.tokenize import word_tokenize

    return functools.partial(word_tokenize, engine="newmm", keep_whitespace=False)


def thai_words(text: str) -> list[str]:
    """Thai words of a run of Thai text, with emphatic letter repeats collapsed first."""
    return [w for w in _thai_tokenize()(_REPEATS.sub(r"\1", text)) if w.strip()]


def burmese_syllables(text: str) -> list[str]:
    return _MY_BREAK.sub(lambda m: " " + m.group(0), text).split()


def segment(text: str) -> list[tuple[str, int, int]]:
    """Words of ``text`` with their offsets: ``(word, start, end)``."""
    out: list[tuple[str, int, int]] = []
    for m in _RUNS.finditer(text):
        start = m.start()
        if m.lastgroup in ("word", "symbol"):
            out.append((m.group(), start, m.end()))
            continue
        pieces = thai_words(m.group()) if m.lastgroup == "thai" else burmese_syllables(m.group())
        run, cursor = m.group(), 0
        for piece in pieces:
            at = run.find(piece, cursor)
            if at < 0:  # collapsed repeats: the piece spans the original letters up to the next
                at = cursor
                end = _next_start(run, pieces, piece, cursor)
            else:
                end = at + len(piece)
            out.append((piece, start + at, start + end))
            cursor = end
    return out


def _next_start(run: str, pieces: list[str], piece: str, cursor: int) -> int:
    idx = pieces.index(piece)
    for nxt in pieces[idx + 1 :]:
        at = run.find(nxt, cursor + 1)
        if at >= 0:
            return at
    return len(run)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=False)
class MultilingualTokenizer(Tokenizer):
    """Tokenizer for Latin, Bengali, Devanagari, Thai and Burmese text in one model."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "intent_tokenization_flag": False,
            "intent_split_symbol": "_",
            "token_pattern": None,
            "prefix_separator_symbol": None,
        }

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> MultilingualTokenizer:
        return cls(config)

    @staticmethod
    def required_packages() -> list[str]:
        return ["pythainlp", "regex"]

    def tokenize(self, message: Message, attribute: str) -> list[Token]:
        text: str | None = message.get(attribute)
        if not text:
            return []
        words = segment(text) or [(text.strip(), 0, len(text))]
        # A message of only punctuation ("?", "...") still gets one token, so it has features.
        return [
            Token(word, start, end, lemma=fold_latin(word.casefold())) for word, start, end in words
        ]
