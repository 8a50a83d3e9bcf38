"""Every locale pack is complete and valid; packs are discovered, not listed in code."""

import shutil

import pytest

from bot import locale_packs, taxonomy

PACKS = locale_packs.discover()


def test_the_seven_languages_and_malay_are_there():
    assert {p.code for p in PACKS} >= {"en", "bn", "ne", "my", "vi", "id", "th", "ms"}


@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.code)
def test_pack_is_complete_and_valid(pack):
    assert locale_packs.check(pack) == []


@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.code)
def test_pack_names_every_country_and_language(pack):
    assert set(pack.countries) >= set(taxonomy.COUNTRIES) - {"KR", "JP"}
    assert set(pack.languages) >= {"en", "bn", "ne", "my", "vi", "id", "th"}


def test_no_message_has_two_intents_across_packs():
    assert locale_packs.check_across(PACKS) == []


def test_check_reports_what_is_missing(tmp_path):
    pack_dir = tmp_path / "xx"
    shutil.copytree(locale_packs.DEFAULT_LOCALES_DIR / "en", pack_dir)
    (pack_dir / "pack.yml").write_text(
        (pack_dir / "pack.yml").read_text(encoding="utf-8").replace("code: en", "code: xx"),
        encoding="utf-8",
    )
    for extra in (pack_dir / "nlu").glob("*.yml"):
        extra.unlink()
    (pack_dir / "nlu" / "intents.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n    - HI\n'
        "- intent: wages\n  examples: |\n"
        '    - salary in [Narnia]{"entity": "country", "value": "NA"}\n',
        encoding="utf-8",
    )
    problems = "\n".join(locale_packs.check(locale_packs.load(pack_dir)))
    assert "duplicate example 'HI'" in problems
    assert "goodbye: 0 examples" in problems
    assert "'NA' is not an ISO code" in problems


def test_a_folder_without_pack_yml_is_not_a_pack(tmp_path):
    (tmp_path / "notes").mkdir()
    shutil.copytree(locale_packs.DEFAULT_LOCALES_DIR / "en", tmp_path / "en")
    assert [p.code for p in locale_packs.discover(tmp_path)] == ["en"]


def test_pack_code_must_match_its_folder(tmp_path):
    shutil.copytree(locale_packs.DEFAULT_LOCALES_DIR / "en", tmp_path / "english")
    with pytest.raises(locale_packs.LocalePackError, match="folder name"):
        locale_packs.discover(tmp_path)
