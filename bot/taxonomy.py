"""The product's shared vocabulary (``../shared/taxonomy.md``): a contract, not a suggestion.

Evaluation sets outside the repository are labelled with these names; renaming one breaks them.
"""

from __future__ import annotations

import regex

LANGUAGE_NAMES = {
    "en": "English",
    "bn": "Bengali",
    "ne": "Nepali",
    "my": "Burmese",
    "vi": "Vietnamese",
    "id": "Bahasa Indonesia",
    "ms": "Bahasa Melayu",
    "th": "Thai",
}

INTENTS = (
    "greet",
    "goodbye",
    "thank",
    "affirm",
    "deny",
    "help",
    "choose_language",
    "human_handoff",
    "case_status",
    "report_grievance",
    "emergency",
    "fees",
    "documents",
    "wages",
    "hours",
    "contract",
    "change_employer",
    "safety",
    "abuse",
    "living_conditions",
    "complaint_process",
    "out_of_scope",
)

TOPIC_INTENTS = (
    "fees",
    "documents",
    "wages",
    "hours",
    "contract",
    "change_employer",
    "safety",
    "abuse",
    "living_conditions",
    "complaint_process",
)

ENTITIES = ("country", "language", "case_ref")

# ISO 3166-1 alpha-2: the taxonomy's destinations and origins, the rest of the Gulf, and the other
# common destinations for workers from these countries.
COUNTRIES = {
    "MY": "Malaysia",
    "TH": "Thailand",
    "HK": "Hong Kong",
    "SG": "Singapore",
    "TW": "Taiwan",
    "QA": "Qatar",
    "SA": "Saudi Arabia",
    "AE": "United Arab Emirates",
    "KW": "Kuwait",
    "OM": "Oman",
    "BH": "Bahrain",
    "KR": "South Korea",
    "JP": "Japan",
    "BD": "Bangladesh",
    "NP": "Nepal",
    "MM": "Myanmar",
    "VN": "Viet Nam",
    "ID": "Indonesia",
}

CASE_CATEGORIES = (
    "fees",
    "documents",
    "wages",
    "hours",
    "contract",
    "change_employer",
    "safety",
    "abuse",
    "living_conditions",
    "forced_labour",
    "other",
)

ILO_INDICATORS = (
    "abuse_of_vulnerability",
    "deception",
    "restriction_of_movement",
    "isolation",
    "physical_sexual_violence",
    "intimidation_threats",
    "retention_of_documents",
    "withholding_of_wages",
    "debt_bondage",
    "abusive_conditions",
    "excessive_overtime",
)

URGENCIES = ("immediate", "high", "normal", "info")
STATUSES = ("new", "triaged", "in_progress", "referred", "resolved", "closed")

# A case reference as the project issues it: "HX-" and 4 to 6 digits, easy to type on a keypad.
# Workers may type it in lower case, without the dash, or with a space.
CASE_REF_PATTERN = regex.compile(r"(?i)\bHX[\s\-]?(\d{4,6})\b")


def normalize_case_ref(text: str) -> str | None:
    """``hx 4821`` -> ``HX-4821``; None when ``text`` holds no case reference."""
    m = CASE_REF_PATTERN.search(text)
    return f"HX-{m.group(1)}" if m else None


# Countries workers come from (the packs' home countries and neighbours): named in a message they
# are where the worker is from, never the destination whose rules a rights answer is about.
ORIGIN_COUNTRIES = frozenset({"BD", "NP", "MM", "VN", "ID", "KH", "LA", "PH", "LK", "IN", "PK"})
