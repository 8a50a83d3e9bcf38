"""The grievance form's fields, declared once: the form's slot (``domain.yml``), the case
store's column, the question the bot asks (English here; translated in every pack's
``messages.po``), and the kind of answer. The form (``actions/form.py``), the filing of a case
(``actions/dialogue.py``), the store (``bot/store/repository.py``) and the dashboard take their
lists from here; ``tests/test_intake.py`` ties it to ``domain.yml`` and to the ``cases`` table.
"""

from __future__ import annotations

import dataclasses

from bot.i18n import N_


@dataclasses.dataclass(frozen=True)
class IntakeField:
    slot: str  # the grievance form's slot
    column: str  # the column of ``cases`` that keeps the answer
    question: str | None  # None: asked another way (the numbered country list)
    kind: str  # text, number, yes_no, country
    searchable: bool = False  # in the keyed-hash search index (names of employers, places)
    identifying: bool = False  # masked for partners when the worker may not be identified


FIELDS: tuple[IntakeField, ...] = (
    IntakeField("intake_what", "what_happened",
                N_("What happened? Write it in your own words."), "text"),
    IntakeField("intake_country", "country", None, "country"),
    IntakeField("intake_city", "city", N_("In which city or town?"), "text",
                searchable=True, identifying=True),
    IntakeField("intake_workplace", "workplace",
                N_("What is the name of the workplace or company?"), "text",
                searchable=True, identifying=True),
    IntakeField("intake_who", "who",
                N_("Who did this? For example: employer, agent, broker or supervisor."), "text",
                searchable=True, identifying=True),
    IntakeField("intake_when", "happened_when", N_("When did it happen?"), "text"),
    IntakeField("intake_workers", "workers_affected",
                N_("How many workers have this problem? Write a number."), "number"),
    IntakeField("intake_fees", "fees_paid",
                N_("How much did you pay in fees for this job?"), "text"),
    IntakeField("intake_wages", "wages_owed", N_("How much pay is owed to you?"), "text"),
    IntakeField("intake_identify", "may_identify",
                N_("When we act on your case, can we say who you are? Reply 1 for yes, 2 for"
                   " no."), "yes_no"),
    IntakeField("intake_consent_ngo", "consent_ngo",
                N_("Can we share your case with a partner organisation that helps workers?"
                   " Reply 1 for yes, 2 for no."), "yes_no"),
    IntakeField("intake_consent_authorities", "consent_authorities",
                N_("Can we share your case with the labour authorities? Reply 1 for yes, 2 for"
                   " no."), "yes_no"),
    IntakeField("intake_consent_employer", "consent_employer",
                N_("Can we share your case with your employer or the brand? Reply 1 for yes, 2"
                   " for no."), "yes_no"),
    IntakeField("intake_safe_contact", "safe_contact",
                N_("How and when is it safe to contact you? For example: here, after 8 in the"
                   " evening."), "text", identifying=True),
)  # fmt: skip
BY_SLOT = {f.slot: f for f in FIELDS}
SLOTS = tuple(f.slot for f in FIELDS)
# The intake proper, as stored on a case (the country is the case's own column).
COLUMNS = tuple(f.column for f in FIELDS if f.kind != "country")
SEARCHABLE = tuple(f.column for f in FIELDS if f.searchable)
IDENTIFYING = tuple(f.column for f in FIELDS if f.identifying)
YES_NO_SLOTS = frozenset(f.slot for f in FIELDS if f.kind == "yes_no")
