"""SMS segment counting (GSM-7 160/153, UCS-2 70/67)."""

import pytest

from bot.sms import segments


@pytest.mark.parametrize(
    "text, encoding, units, count",
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("[" * 81, "GSM-7", 162, 2),
        ("toi chua duoc tra luong", "GSM-7", 23, 1),  # Vietnamese without diacritics: GSM-7
        ("tôi chưa được trả lương", "UCS-2", 23, 1),  # with them: UCS-2
        ("আ" * 70, "UCS-2", 70, 1),
        ("আ" * 71, "UCS-2", 71, 2),
        ("ก" * 134, "UCS-2", 134, 2),
        ("ก" * 135, "UCS-2", 135, 3),
        ("😭" * 35, "UCS-2", 70, 1),  # emoji are two UTF-16 units
    ],
)
def test_segments(text, encoding, units, count):
    s = segments(text)
    assert (s.encoding, s.units, s.count) == (encoding, units, count)


def test_a_menu_is_split_between_its_lines_never_inside_one():
    """A worker must never get "3 Check your" in one SMS and "case" in the next: line ends are
    cut points like sentence ends (the web simulator showed Bengali and Vietnamese menus cut)."""
    from actions import messages
    from bot.i18n import Translations
    from bot.sms import split_for_sms

    translations = Translations()
    for language in ("bn", "vi", "my", "ne", "th"):
        menu = translations.text(language, messages.MENU)
        parts = split_for_sms(menu, 4)
        assert len(parts) > 1, language  # long enough to need cutting
        lines = [line for part in parts for line in part.split(" ", 1)[1].splitlines()]
        assert lines == menu.splitlines(), (language, parts)
