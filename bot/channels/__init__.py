"""The channels workers write on, as Rasa input channels, one module per provider.

``telegram.py`` (python-telegram-bot) and ``twilio.py`` (SMS and WhatsApp in one handler) share
``base.HelplineChannel``: verify the sender, store the message, acknowledge, process later
through the durable queue in ``inbox.py``. Settings: ``config.py``.
"""
