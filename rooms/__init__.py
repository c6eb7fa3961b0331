"""The real-time domain: chat, Q&A, polls, check-in stream, presence, broadcasts. The only code that emits."""
