"""The bot's first responses, in English; translated in each pack's messages.po.

Written for a worker with little schooling, reading on a cheap phone, perhaps with someone
looking over their shoulder: short, plain words, SMS-sized. Placeholders are named.
"""

from bot.i18n import N_

GREETING = N_("Hello. This is a free helpline for migrant workers. What you write here is private.")

MENU = N_(
    "Reply with a number:\n"
    "1 Ask about your rights\n"
    "2 Report a problem\n"
    "3 Check your case\n"
    "4 Talk to a person\n"
    "5 Change language"
)

NOT_UNDERSTOOD = N_("Sorry, I did not understand. Please reply with a number from the menu.")

CHOOSE_LANGUAGE = N_("Which language do you want? Reply with a number:")

LANGUAGE_SET = N_("OK. I will write to you in English.")

CASE_FILED = N_(
    "Your case number is {case_ref}. Your secret code is {secret}. Keep them to check your case."
)
