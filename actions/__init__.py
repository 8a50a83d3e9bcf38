"""The Rasa action server (rasa-sdk): ``rasa run actions --actions actions``."""
