"""Every response of the bot, in English; translated in each pack's ``messages.po``.

Written for a worker with little schooling, reading on a cheap phone, perhaps with someone
looking over their shoulder: short, plain words, SMS-sized, whole sentences (never joined from
translated fragments). Placeholders are named. Numbers the worker replies with are the same in
every language (``0`` is always the menu; in yes/no questions ``1`` is yes and ``2`` is no).
Rights answers are not here: they are data in each pack's ``rights.yml``.
"""

from bot import intake
from bot.i18n import N_

# --- First contact, menu, language -------------------------------------------------------------
GREETING = N_("Hello. This is a free helpline for migrant workers. What you write here is private.")

MENU = N_(
    "Reply with a number:\n"
    "1 Ask about your rights\n"
    "2 Report a problem\n"
    "3 Check your case\n"
    "4 Talk to a person\n"
    "5 Change language\n"
    "6 Delete my data"
)

# On Telegram the menu has one more line: clearing the chat from the phone (a quick exit).
MENU_TELEGRAM = N_(
    "Reply with a number:\n"
    "1 Ask about your rights\n"
    "2 Report a problem\n"
    "3 Check your case\n"
    "4 Talk to a person\n"
    "5 Change language\n"
    "6 Delete my data\n"
    "7 Clear this chat now"
)

NOT_UNDERSTOOD = N_("Sorry, I did not understand. Please reply with a number from the menu.")

OUT_OF_SCOPE = N_("Sorry, I can only help with work problems and workers' rights.")

ASK_QUESTION = N_("Write your question in your own words. For example: my boss keeps my passport.")

CHOOSE_LANGUAGE = N_("Which language do you want? Reply with a number:")

LANGUAGE_SET = N_("OK. I will write to you in English.")

MENU_HINT = N_("Reply 0 for the menu.")

WELCOME = N_("You are welcome. Reply 0 for the menu.")

GOODBYE = N_("Take care. You can write again at any time.")

OK = N_("OK.")

MEDIA_RECEIVED = N_("Thank you. We received your file and keep it safe with your messages.")

# --- Rights answers ----------------------------------------------------------------------------
ASK_COUNTRY = N_("Which country do you work in? Reply with a number or the name:")

OTHER_COUNTRY = N_("Other country")

GENERAL_ANSWER = N_(
    "I do not have the rules of {country} yet. A caseworker can tell you more. This is true"
    " everywhere:"
)

ANSWER_OFFER = N_(
    "Reply 1 to report this problem, 2 to see where this answer comes from, 0 for the menu."
)

ANSWER_SOURCE = N_("Source: {source}. Last checked: {date}.")

# --- Grievance intake (the grievance form) -----------------------------------------------------
INTAKE_PRIVACY = N_(
    "Before you start: we keep what you write private. We share it only when you say yes, or if"
    " a life is in danger. You do not need to give your name. Write 'skip' to skip a question,"
    " or 'cancel' to stop."
)

# The grievance form's questions are declared with their fields in bot/intake.py.
ASK_WHAT_HAPPENED = intake.BY_SLOT["intake_what"].question
ASK_CITY = intake.BY_SLOT["intake_city"].question
ASK_WORKPLACE = intake.BY_SLOT["intake_workplace"].question
ASK_WHO = intake.BY_SLOT["intake_who"].question
ASK_WHEN = intake.BY_SLOT["intake_when"].question
ASK_WORKERS_AFFECTED = intake.BY_SLOT["intake_workers"].question
ASK_FEES_PAID = intake.BY_SLOT["intake_fees"].question
ASK_WAGES_OWED = intake.BY_SLOT["intake_wages"].question
ASK_MAY_IDENTIFY = intake.BY_SLOT["intake_identify"].question
ASK_CONSENT_NGO = intake.BY_SLOT["intake_consent_ngo"].question
ASK_CONSENT_AUTHORITIES = intake.BY_SLOT["intake_consent_authorities"].question
ASK_CONSENT_EMPLOYER = intake.BY_SLOT["intake_consent_employer"].question
ASK_SAFE_CONTACT = intake.BY_SLOT["intake_safe_contact"].question

YES_NO_HINT = N_("Please reply 1 for yes or 2 for no.")

NUMBER_HINT = N_("Please write a number, or 'skip'.")

INTAKE_CANCELLED = N_("OK, I stopped. No case was opened. Reply 0 for the menu.")

CASE_FILED = N_(
    "Your case number is {case_ref}. Your secret code is {secret}. Keep them to check your case."
)

CASE_NEXT = N_("A caseworker will read your case. Write here if something changes.")

ASK_SMS_FALLBACK = N_(
    "If WhatsApp cannot reach you, can we send you an SMS to this phone number? Reply 1 for yes,"
    " 2 for no."
)

# --- Case status -------------------------------------------------------------------------------
ASK_CASE_REF = N_("What is your case number? It looks like HX-123456.")

ASK_SECRET = N_("For your safety, write the secret code of case {case_ref}.")

# After five wrong codes for a case number, from any phone: said whether or not the case exists.
SECRET_LOCKED = N_(
    "Too many wrong codes. For your safety, try again tomorrow. Reply 0 for the menu."
)

CASE_NOT_FOUND = N_("I could not find that case. Check the number and the code, then try again.")

NO_CASE_YET = N_("You have no case yet. Reply 2 to report a problem, 0 for the menu.")

STATUS_NEW = N_("Case {case_ref}: we received it. A caseworker will read it soon.")

STATUS_TRIAGED = N_("Case {case_ref}: a caseworker has read it and will act soon.")

STATUS_IN_PROGRESS = N_("Case {case_ref}: a caseworker is working on it.")

STATUS_REFERRED = N_("Case {case_ref}: we sent it to a partner organisation that can help.")

STATUS_RESOLVED = N_(
    "Case {case_ref}: it is marked as solved. If it is not solved, write to us here."
)

STATUS_CLOSED = N_("Case {case_ref}: it is closed. You can report a new problem at any time.")

STATUS_UPDATED = N_("Last change: {date}.")

# --- Emergency ---------------------------------------------------------------------------------
EMERGENCY = N_(
    "If you are in danger now, go to a safe place if you can. Our team has been told and will"
    " contact you as soon as possible."
)

EMERGENCY_CONTACTS = N_("Help in {country}:")

EMERGENCY_NO_CONTACTS = N_(
    "If you can, call the police emergency number of the country you are in."
)

# Worded for the kind of danger (bot.danger.KINDS; the taxonomy's danger kinds). Each says what to
# do first for that danger, and that our team knows. Suicide and self-harm have their own reply
# below: no instructions, no blame, no police first.
EMERGENCY_VIOLENCE = N_(
    "If someone is hurting you, go to a safe place if you can: a room you can lock, a shop, a"
    " neighbour. Our team has been told and will contact you as soon as possible."
)

EMERGENCY_SEXUAL = N_(
    "What happened is not your fault. If you can, go to a safe place away from this person. Our"
    " team has been told and will contact you as soon as possible."
)

EMERGENCY_CONFINEMENT = N_(
    "If you are locked in or not allowed to leave, keep your phone hidden and charged. Tell us"
    " where you are if you can. Our team has been told and will contact you soon."
)

EMERGENCY_TRAFFICKING = N_(
    "You are not to blame for being tricked. Keep your phone hidden. Tell us where you are if you"
    " can. Our team has been told and will contact you soon."
)

EMERGENCY_MEDICAL = N_(
    "If someone is badly hurt or very sick, get a doctor or an ambulance now. Our team has been"
    " told and will contact you soon."
)

EMERGENCY_DEPRIVATION = N_(
    "If you have no food or water, ask a neighbour, a shop or a place of worship for help now."
    " Our team has been told and will contact you soon."
)

EMERGENCY_FIRE = N_(
    "If there is fire or smoke, get out now and stay out. Do not go back for your things. Our"
    " team has been told."
)

EMERGENCY_THIRD_PARTY = N_(
    "Thank you for telling us. If you can, stay near this person or get someone to help them now."
    " Our team has been told and will contact you soon."
)

EMERGENCY_CHILD = N_(
    "A child must not work like this. If you are under 18, you have extra protection. Our team"
    " has been told and will contact you soon."
)

# Suicide and self-harm: that we are here, a person will write soon, are you safe now; then the
# crisis lines of the destination country (bot/data/crisis_lines.yml), never invented.
EMERGENCY_SUICIDE = N_(
    "Thank you for telling us. You are not alone. A person from our team will write to you here"
    " soon."
)

ASK_SAFE_NOW = N_("Are you safe right now? Reply 1 for yes, 2 for no.")

CRISIS_LINES = N_("You can also talk to someone now, free and private:")

CRISIS_NO_LINE = N_("If you can, stay with someone you trust until we write to you.")

# While no person has answered a worker in danger, the bot keeps answering: never silence.
HOLDING = N_(
    "We read your message. A person from our team will write to you soon. Reply 1 if you are safe"
    " now."
)

HOLDING_SUICIDE = N_(
    "I am still here. A person from our team will write to you soon. Reply 1 if you are safe now,"
    " 3 for a number you can call now."
)

SAFE_NOW = N_(
    "Thank you for telling us. We are glad you are safe. A person will still read your messages."
    " Reply 0 for the menu."
)

NOT_SAFE = N_(
    "Thank you for telling us. If you can, go to a safe place and keep writing here. A person"
    " will write to you soon."
)

# --- Hand-off ----------------------------------------------------------------------------------
HANDOFF = N_(
    "OK. A person from our team will answer you here within {hours} hours. Until then I will not"
    " reply. If you are in danger, write it here at once."
)

# --- Erasure -----------------------------------------------------------------------------------
ERASE_CONFIRM = N_(
    "Do you want to delete your messages and details? This cannot be undone. Reply 1 for yes,"
    " 2 for no."
)

ERASE_DONE = N_(
    "Done. Your messages and details are deleted. We kept only numbers that do not show who you"
    " are, like how many cases of each kind, so we know what workers need."
)

# After ERASE_DONE: what an erasure cannot reach, said plainly.
ERASE_NOT_REACHED = N_(
    "We cannot delete the messages on your phone, copies kept by WhatsApp, Telegram or your phone"
    " company, or papers a partner organisation already printed. You can delete this chat on your"
    " phone."
)

ERASE_CANCELLED = N_("OK, nothing was deleted.")

# Danger kinds -> their reply (suicide: EMERGENCY_SUICIDE and the crisis lines instead).
EMERGENCY_BY_KIND = {
    "violence": EMERGENCY_VIOLENCE,
    "sexual": EMERGENCY_SEXUAL,
    "confinement": EMERGENCY_CONFINEMENT,
    "trafficking": EMERGENCY_TRAFFICKING,
    "medical": EMERGENCY_MEDICAL,
    "deprivation": EMERGENCY_DEPRIVATION,
    "fire": EMERGENCY_FIRE,
    "third_party": EMERGENCY_THIRD_PARTY,
    "child": EMERGENCY_CHILD,
}

# Status names in the workflow -> their message.
STATUS_MESSAGES = {
    "new": STATUS_NEW,
    "triaged": STATUS_TRIAGED,
    "in_progress": STATUS_IN_PROGRESS,
    "referred": STATUS_REFERRED,
    "resolved": STATUS_RESOLVED,
    "closed": STATUS_CLOSED,
}

