"""What the channels themselves say, before the NLU: replies to STOP, START and HELP, and the
offer of SMS without accents. Translated in each pack's ``messages.po`` like every response
(``make i18n-extract`` collects ``N_()`` from ``bot/`` too); ``{stop}``, ``{start}``, ``{plain}``
and ``{accents}`` are the pack's own keywords (pack.yml).
"""

from bot.i18n import N_

STOPPED = N_("OK. We will not send you any more messages. Write {start} if you want them again.")

STARTED = N_("OK. You will get our messages again.")

HELP_INFO = N_(
    "This is a free helpline for migrant workers. Write {stop} to get no more messages."
)

SMS_PLAIN_OFFER = N_(
    "SMS without accents costs less. Write {plain} to get our SMS without accents, {accents} to"
    " go back."
)

SMS_PLAIN_ON = N_("OK. Our SMS will come without accents.")

SMS_PLAIN_OFF = N_("OK. Our SMS will come with accents.")
