"""Settings of the real-time rooms: history, replay, rate limits, presence, the cross-node bus."""

from __future__ import annotations

from dataclasses import dataclass

from config.fields import SettingsError, setting


@dataclass(frozen=True, slots=True)
class LiveSettings:
    socketio_ping_interval: float = setting(25.0, help="Engine.IO ping interval in seconds.")
    socketio_ping_timeout: float = setting(20.0, help="Engine.IO ping timeout in seconds.")
    socketio_max_payload_bytes: int = setting(
        65_536, help="Largest accepted Socket.IO packet (engine.io default is 1 MB: too generous)."
    )
    # --- replay ---------------------------------------------------------------------------------
    live_stream_maxlen: int = setting(
        10_000, help="Room events kept per room in its Redis replay stream. A client "
        "that reconnects further behind than this gets `resync` (Socket.IO's Redis Streams adapter keeps 10,000)."
    )
    live_stream_ttl_seconds: int = setting(
        7 * 86400, help="A room's replay stream expires after this long without events (memory bound for "
        "finished events); the next event starts a new epoch."
    )
    live_history_size: int = setting(50, help="Chat messages sent in the `room:join` ack of a fresh join.")
    # --- chat -----------------------------------------------------------------------------------
    live_chat_max_length: int = setting(500, help="Longest chat message in characters (after trimming).")
    live_banned_words: tuple[str, ...] = setting(
        (), help="Comma-separated words refused in chat (`message_rejected`), matched case-insensitively "
        "as whole words."
    )
    live_chat_rate_limit: int = setting(
        10, help="Chat messages a user may send per `live_chat_rate_window_seconds`, across all rooms."
    )
    live_chat_rate_window_seconds: float = setting(10.0, help="Window of `live_chat_rate_limit`.")
    live_action_rate_limit: int = setting(
        60, help="Other chat actions (reactions, edits, deletes, reports, joins) a user may do per "
        "`live_chat_rate_window_seconds`."
    )
    live_max_rooms_per_connection: int = setting(
        32, help="Rooms one connection may be in at once (bounds per-connection state)."
    )
    # --- presence -------------------------------------------------------------------------------
    live_presence_interval_seconds: float = setting(
        1.0, help="Presence changes are coalesced and broadcast at most this often per room."
    )
    live_presence_list_max: int = setting(
        50, help="Rooms up to this many members get the full member list; larger ones a sample of this size."
    )
    live_presence_events_max: int = setting(
        200, help="Rooms above this many members get counts only in `presence:update` (no joined/left lists)."
    )
    # --- cross-node bus -------------------------------------------------------------------------
    live_bus_redis_url: str | None = setting(
        None, help="Redis URL of the cross-node pub/sub connection. Unset: redis_url.", secret=True
    )
    live_canary_interval_seconds: float = setting(
        2.0, help="How often a node sends a canary through its own Redis subscription."
    )
    live_canary_timeout_seconds: float = setting(
        6.0, help="A node whose canary has not come back for this long reports its subscription broken "
        "(`/readyz` fails) and reconnects it."
    )
    live_gap_repair_seconds: float = setting(
        0.2, help="How long a node waits for a missing room event before fetching it from the stream or "
        "PostgreSQL."
    )
    live_gc_freeze_interval_seconds: float = setting(
        2.0, help="Every this often, surviving objects are moved out of the garbage collector's reach "
        "(gc.freeze): with 10,000 connections (~1M objects) a full collection would stop the event loop "
        "for ~1 s. Garbage cycles are reclaimed in a full collection only while the node is nearly idle. "
        "0 disables (Python's default collector)."
    )
    live_fanout_min_interval_ms: float = setting(
        5.0, help="Room events that arrive within this many milliseconds of a room's previous write to "
        "its members are written together (one syscall per member instead of one per event). Adds at "
        "most this much latency; 0 writes every loop iteration."
    )
    live_max_send_buffer_bytes: int = setting(
        4_194_304, help="A client whose unsent data exceeds this is disconnected (it reconnects and replays)."
    )

    # --- Q&A, polls, networking (rooms/qa.py, rooms/polls.py, rooms/networking.py) ----------------
    qa_question_max_length: int = setting(300, help="Longest question in characters (after trimming).")
    qa_ask_rate_limit: int = setting(
        5, help="Questions a user may ask per `qa_ask_rate_window_seconds`, across all sessions."
    )
    qa_ask_rate_window_seconds: float = setting(60.0, help="Window of `qa_ask_rate_limit`.")
    qa_snapshot_size: int = setting(
        100, help="Questions in a session's join snapshot: this many most upvoted plus this many newest "
        "(more with `qa:list`)."
    )
    qa_votes_max_hz: float = setting(
        4.0, help="Upvote counts of a session are broadcast (`qa:votes`) at most this often per second, "
        "across all nodes."
    )
    poll_result_max_hz: float = setting(
        4.0, help="Results of a poll are broadcast (`poll:results`) at most this often per second, across all "
        "nodes: 10,000 votes are a handful of broadcasts, not 10,000."
    )
    poll_word_max_length: int = setting(40, help="Longest word-cloud entry in characters (after normalization).")
    poll_wordcloud_top: int = setting(50, help="Word-cloud results list this many most frequent entries.")
    poll_leaderboard_size: int = setting(10, help="Quiz leaderboard entries sent when a quiz closes.")
    networking_request_rate_limit: int = setting(
        20, help="Connection requests a user may send per `networking_request_rate_window_seconds`."
    )
    networking_request_rate_window_seconds: float = setting(
        3600.0, help="Window of `networking_request_rate_limit`."
    )

    def validate(self) -> None:
        if self.socketio_max_payload_bytes < 1024:
            raise SettingsError("FOYER_SOCKETIO_MAX_PAYLOAD_BYTES: must be at least 1024")
        if self.live_stream_maxlen < 10:
            raise SettingsError("FOYER_LIVE_STREAM_MAXLEN: must be at least 10")
        if not 0 <= self.live_history_size <= 500:
            raise SettingsError("FOYER_LIVE_HISTORY_SIZE: must be between 0 and 500")
        if not 1 <= self.live_chat_max_length <= 10_000:
            raise SettingsError("FOYER_LIVE_CHAT_MAX_LENGTH: must be between 1 and 10000")
        if self.live_chat_rate_limit < 1 or self.live_action_rate_limit < 1:
            raise SettingsError("FOYER_LIVE_CHAT_RATE_LIMIT / FOYER_LIVE_ACTION_RATE_LIMIT: must be at least 1")
        if self.live_chat_rate_window_seconds <= 0:
            raise SettingsError("FOYER_LIVE_CHAT_RATE_WINDOW_SECONDS: must be positive")
        if self.live_presence_interval_seconds <= 0 or self.live_canary_interval_seconds <= 0:
            raise SettingsError("FOYER_LIVE_PRESENCE_INTERVAL_SECONDS / FOYER_LIVE_CANARY_INTERVAL_SECONDS: "
                                "must be positive")
        if not 0 <= self.live_fanout_min_interval_ms <= 100:
            raise SettingsError("FOYER_LIVE_FANOUT_MIN_INTERVAL_MS: must be between 0 and 100")
        if self.live_canary_timeout_seconds <= self.live_canary_interval_seconds:
            raise SettingsError("FOYER_LIVE_CANARY_TIMEOUT_SECONDS: must exceed the canary interval")
        self._validate_engagement()

    def _validate_engagement(self) -> None:
        if not 1 <= self.qa_question_max_length <= 5000:
            raise SettingsError("FOYER_QA_QUESTION_MAX_LENGTH: must be between 1 and 5000")
        if self.qa_ask_rate_limit < 1 or self.qa_ask_rate_window_seconds <= 0:
            raise SettingsError("FOYER_QA_ASK_RATE_LIMIT / FOYER_QA_ASK_RATE_WINDOW_SECONDS: must be positive")
        if not 1 <= self.qa_snapshot_size <= 1000:
            raise SettingsError("FOYER_QA_SNAPSHOT_SIZE: must be between 1 and 1000")
        if not 0.1 <= self.qa_votes_max_hz <= 50:
            raise SettingsError("FOYER_QA_VOTES_MAX_HZ: must be between 0.1 and 50")
        if not 0.1 <= self.poll_result_max_hz <= 50:
            raise SettingsError("FOYER_POLL_RESULT_MAX_HZ: must be between 0.1 and 50")
        if not 1 <= self.poll_word_max_length <= 200:
            raise SettingsError("FOYER_POLL_WORD_MAX_LENGTH: must be between 1 and 200")
        if not 1 <= self.poll_wordcloud_top <= 1000 or not 1 <= self.poll_leaderboard_size <= 100:
            raise SettingsError("FOYER_POLL_WORDCLOUD_TOP (1..1000) / FOYER_POLL_LEADERBOARD_SIZE (1..100): out of range")
        if self.networking_request_rate_limit < 1 or self.networking_request_rate_window_seconds <= 0:
            raise SettingsError("FOYER_NETWORKING_REQUEST_RATE_LIMIT / _WINDOW_SECONDS: must be positive")
