"""Organizer analytics: outbox consumers that maintain aggregate tables incrementally
(`consumers.py`), and the read model behind the endpoints (`reports.py`)."""
