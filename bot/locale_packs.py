"""Locale packs: discovery, loading and validation.

A locale pack is a folder ``locales/<code>/`` holding everything language-specific:

- ``pack.yml``: the language's names, its scripts, and the names of countries and languages as
  workers write them in that language (used by the entity extractor);
- ``nlu/*.yml``: Rasa NLU training examples for every intent in the taxonomy;
- ``danger.yml``: the words for danger now, by kind, and examples (``nlu.danger``).

Adding a language is adding a folder: nothing in the code lists the languages.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from bot import taxonomy
from nlu.script import has_diacritics, looks_like_zawgyi, script_of

DEFAULT_LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"


@dataclasses.dataclass(frozen=True)
class LocalePack:
    """One language's pack, as loaded from its folder."""

    code: str
    path: Path
    name: str
    english_name: str
    countries: dict[str, list[str]]
    languages: dict[str, list[str]]
    meta: dict

    @property
    def nlu_files(self) -> list[Path]:
        return sorted((self.path / "nlu").glob("*.yml"))


class LocalePackError(ValueError):
    """A locale pack that cannot be used, with a message that says which file and why."""


def discover(locales_dir: Path | str = DEFAULT_LOCALES_DIR) -> list[LocalePack]:
    """Every pack under ``locales_dir`` (a folder with a ``pack.yml``), sorted by code."""
    locales_dir = Path(locales_dir)
    if not locales_dir.is_dir():
        raise LocalePackError(f"locales folder not found: {locales_dir}")
    packs = [load(p) for p in sorted(locales_dir.iterdir()) if (p / "pack.yml").is_file()]
    if not packs:
        raise LocalePackError(f"no locale packs (folders with pack.yml) in {locales_dir}")
    return packs


def load(path: Path | str) -> LocalePack:
    path = Path(path)
    meta_file = path / "pack.yml"
    try:
        meta = yaml.safe_load(meta_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LocalePackError(f"{meta_file}: cannot read: {exc}") from exc
    code = meta.get("code")
    if code != path.name:
        raise LocalePackError(
            f"{meta_file}: code {code!r} must equal the folder name {path.name!r}"
        )
    countries = {
        str(k).upper(): [str(n) for n in v] for k, v in (meta.get("countries") or {}).items()
    }
    languages = {str(k): [str(n) for n in v] for k, v in (meta.get("languages") or {}).items()}
    return LocalePack(
        code=code,
        path=path,
        name=str(meta.get("name", code)),
        english_name=str(meta.get("english_name", code)),
        countries=countries,
        languages=languages,
        meta=meta,
    )


def variant_of(code: str, text: str) -> str:
    """How an example is written: ``native``, ``romanized`` (bn, ne) or ``no_diacritics`` (vi)."""
    if code in ("bn", "ne", "my", "th"):
        return "native" if script_of(text) != "Latn" else "romanized"
    if code == "vi":
        return "native" if has_diacritics(text) else "no_diacritics"
    return "native"


@dataclasses.dataclass
class Example:
    text: str
    intent: str
    entities: list[dict]
    source: Path


def read_examples(files: Iterable[Path]) -> list[Example]:
    """Training examples from Rasa YAML files, with annotations resolved by Rasa's own reader."""
    from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader

    out: list[Example] = []
    for f in files:
        try:
            td = RasaYAMLReader().read(f)
        except Exception as exc:  # Rasa raises several types for malformed YAML
            raise LocalePackError(f"{f}: not valid Rasa NLU YAML: {exc}") from exc
        for m in td.intent_examples:
            out.append(Example(m.get("text"), m.get("intent"), list(m.get("entities") or []), f))
    return out


# What every pack must hold; bn and ne also need romanized examples and vi examples without
# diacritics, because that is how many workers type on cheap phones.
MIN_NATIVE_PER_INTENT = 30
MIN_VARIANT_PER_INTENT = 10
REQUIRED_VARIANTS = {"bn": "romanized", "ne": "romanized", "vi": "no_diacritics"}


def known_languages(pack: LocalePack) -> set[str]:
    """The taxonomy's language codes and every pack beside this one (a new pack is a new code)."""
    siblings = {p.name for p in pack.path.parent.iterdir() if (p / "pack.yml").is_file()}
    return set(taxonomy.LANGUAGE_NAMES) | siblings


def check(pack: LocalePack, *, minimums: bool = True) -> list[str]:
    """Problems with a pack, as human-readable lines; an empty list means the pack is usable."""
    problems: list[str] = []
    for iso in pack.countries:
        if iso not in taxonomy.COUNTRIES:
            problems.append(f"pack.yml: unknown country code {iso}")
    for lang in pack.languages:
        if lang not in known_languages(pack):
            problems.append(f"pack.yml: unknown language code {lang}")
    if not pack.nlu_files:
        return problems + [f"{pack.path}/nlu: no training files"]
    try:
        examples = read_examples(pack.nlu_files)
    except LocalePackError as exc:
        return problems + [str(exc)]

    counts: dict[str, dict[str, int]] = {i: {} for i in taxonomy.INTENTS}
    seen: dict[str, str] = {}
    for ex in examples:
        if ex.intent not in taxonomy.INTENTS:
            problems.append(f"{ex.source.name}: unknown intent {ex.intent!r}")
            continue
        key = " ".join(ex.text.casefold().split())
        if key in seen:
            problems.append(f"duplicate example {ex.text!r} ({seen[key]} and {ex.intent})")
        seen[key] = ex.intent
        variant = variant_of(pack.code, ex.text)
        counts[ex.intent][variant] = counts[ex.intent].get(variant, 0) + 1
        if pack.code == "my" and looks_like_zawgyi(ex.text):
            problems.append(f"{ex.text!r}: looks like Zawgyi; write training data in Unicode")
        for ent in ex.entities:
            problems.extend(_check_entity(pack, ex, ent))
    problems.extend(_check_danger_lexicon(pack, minimums))
    if minimums:
        for intent, by_variant in counts.items():
            if by_variant.get("native", 0) < MIN_NATIVE_PER_INTENT:
                problems.append(
                    f"{intent}: {by_variant.get('native', 0)} examples in native script,"
                    f" need {MIN_NATIVE_PER_INTENT}"
                )
            variant = REQUIRED_VARIANTS.get(pack.code)
            if variant and by_variant.get(variant, 0) < MIN_VARIANT_PER_INTENT:
                problems.append(
                    f"{intent}: {by_variant.get(variant, 0)} {variant} examples,"
                    f" need {MIN_VARIANT_PER_INTENT}"
                )
    return problems


def _check_danger_lexicon(pack: LocalePack, minimums: bool) -> list[str]:
    """The pack's danger lexicon (``danger.yml``, nlu/danger.py): always readable; complete when
    ``minimums`` (a new pack can train before it has one)."""
    from nlu import danger

    if minimums:
        return danger.check_pack_lexicon(pack.path)
    try:
        danger.load_pack_lexicon(pack.path)
    except danger.LexiconError as exc:
        return [str(exc)]
    return []


def check_across(packs: list[LocalePack]) -> list[str]:
    """The same message labelled with different intents in two packs ("k": ok in English, no in
    Vietnamese): one model learns from all packs, so it must not be taught both."""
    seen: dict[str, tuple[str, str]] = {}
    problems = []
    for pack in packs:
        for ex in read_examples(pack.nlu_files):
            key = " ".join(ex.text.casefold().split())
            other = seen.setdefault(key, (pack.code, ex.intent))
            if other[1] != ex.intent:
                problems.append(
                    f"{ex.text!r} is {other[1]} in {other[0]} but {ex.intent} in {pack.code}"
                )
    return problems


def _check_entity(pack: LocalePack, ex: Example, ent: dict) -> list[str]:
    name, value = ent.get("entity"), ent.get("value")
    where = f"{ex.source.name}: {ex.text!r}"
    if name == "country":
        if value not in taxonomy.COUNTRIES:
            return [f"{where}: country value {value!r} is not an ISO code from the taxonomy"]
        surface = ex.text[ent["start"] : ent["end"]]
        names = [n.casefold() for n in pack.countries.get(value, [])]
        if surface.casefold() not in names:
            return [f"{where}: {surface!r} is not listed under countries.{value} in pack.yml"]
    elif name == "language":
        if value not in known_languages(pack):
            return [f"{where}: language value {value!r} is not a taxonomy code or a pack"]
        surface = ex.text[ent["start"] : ent["end"]]
        names = [n.casefold() for n in pack.languages.get(value, [])]
        if surface.casefold() not in names:
            return [f"{where}: {surface!r} is not listed under languages.{value} in pack.yml"]
    elif name == "case_ref":
        if not taxonomy.CASE_REF_PATTERN.fullmatch(ex.text[ent["start"] : ent["end"]]):
            return [f"{where}: case_ref {value!r} does not look like a case reference"]
    else:
        return [f"{where}: unknown entity {name!r}"]
    return []


def summary(pack: LocalePack) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for ex in read_examples(pack.nlu_files):
        v = variant_of(pack.code, ex.text)
        counts.setdefault(ex.intent, {}).setdefault(v, 0)
        counts[ex.intent][v] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helpline locales", description=__doc__)
    parser.add_argument("command", choices=["check", "summary"])
    parser.add_argument("packs", nargs="*", help="pack folders (default: every pack)")
    args = parser.parse_args(argv)
    packs = [load(p) for p in args.packs] if args.packs else discover()
    failed = False
    for pack in packs:
        if args.command == "summary":
            for intent, by_variant in sorted(summary(pack).items()):
                print(pack.code, intent, by_variant)
            continue
        problems = check(pack)
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{pack.code}: {status}")
        for p in problems:
            print(f"  - {p}")
        failed |= bool(problems)
    if args.command == "check" and len(packs) > 1:
        across = check_across(packs)
        for p in across:
            print(f"across packs: {p}")
        failed |= bool(across)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
