"""Whole-message commands: menu numbers, case references and each pack's command words.

A worker on a keypad phone answers a menu with ``2`` (or ``২``, ``၂``, ``๒``: the normaliser has
already made them ASCII), types a case reference alone, or types a word such as ``skip``. These are
not sentences to classify: what they mean depends on what the bot just asked, which only the
dialogue knows. So they are recognised exactly here and handed to the dialogue as ``choice`` or
``command``; the classifier's guess for them would be noise.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import regex

from bot import taxonomy
from nlu.gazetteer import fold

# The commands the dialogue acts on; pack.yml ``keywords`` may list more (channel keywords such as
# stop/start, handled by the channels before the NLU).
DIALOGUE_COMMANDS = ("skip", "cancel", "erase")
# What the channels put in place of a file sent without a caption (bot/channels).
MEDIA_MARKERS = frozenset({"[photo]", "[voice]", "[audio]", "[document]", "[media]"})
_NUMBER = regex.compile(r"^\s*#?\s*(\d{1,6})\s*[.)]?\s*$")
_PUNCT = regex.compile(r"[\p{P}\p{S}\s]+")


def _key(text: str) -> str:
    return _PUNCT.sub(" ", fold(text)).strip()


@dataclasses.dataclass
class CommandWords:
    """Command word (folded) -> command, from every pack's ``keywords``; ``languages``: the
    pack each word came from (the channels answer STOP in the language it was written in)."""

    words: dict[str, str]
    languages: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_packs(cls, packs, commands=DIALOGUE_COMMANDS) -> CommandWords:
        """The packs' words for ``commands`` (the channels use it for stop/start/quick_exit)."""
        words: dict[str, str] = {}
        languages: dict[str, str] = {}
        for pack in packs:
            for command, phrases in (pack.meta.get("keywords") or {}).items():
                if command not in commands:
                    continue
                for phrase in phrases or []:
                    # punctuation-only words ("-") match as written
                    key = _key(str(phrase)) or str(phrase).strip()
                    if key:
                        words.setdefault(key, command)
                        languages.setdefault(key, pack.code)
        return cls(words, languages)

    def save(self, path: Path) -> None:
        """As JSON: a model file must never be a pickle (``nlu.components.pack_trained``)."""
        data = {"words": self.words, "languages": self.languages}
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> CommandWords:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["words"], data["languages"])

    def match(self, text: str) -> dict:
        """``{"choice": "2"}``, ``{"case_ref": "HX-1234"}``, ``{"command": "skip"}`` or ``{}``."""
        if text.strip() in MEDIA_MARKERS:
            return {"command": "media"}
        m = _NUMBER.match(text)
        if m:
            return {"choice": m.group(1)}
        stripped = text.strip()
        ref = taxonomy.normalize_case_ref(stripped)
        if ref and taxonomy.CASE_REF_PATTERN.fullmatch(stripped.strip(".!?")):
            return {"case_ref": ref}
        command = self.command(text)
        return {"command": command} if command else {}

    def command(self, text: str) -> str | None:
        """The command a whole message is (case, accents and punctuation ignored), or None."""
        return self.command_and_language(text)[0]

    def command_and_language(self, text: str) -> tuple[str | None, str | None]:
        """The command a whole message is and the language of the pack that has the word."""
        for key in (_key(text), text.strip()):
            if key in self.words:
                return self.words[key], self.languages.get(key)
        return None, None
