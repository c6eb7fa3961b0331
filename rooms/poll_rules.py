"""Poll rules without I/O: definitions (validated), votes (as counter keys), word-cloud
normalization, and the views attendees and moderators get.

Kinds and their votes (`poll:vote` fields):
- `single`: `option` (an option id);
- `multiple`: `options` (1..`max_choices` distinct option ids);
- `rating`: `value` (an integer in `scale_min..scale_max`);
- `word_cloud`: `text` (short free text, normalized: case folded, diacritics removed,
  whitespace collapsed, surrounding punctuation stripped; banned words refused);
- `quiz`: `option`, or `options` when several answers are correct; the correct answer is
  hidden until the poll closes, then each voter scores `points` if their answer is exactly right.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Annotated, Any

import msgspec

from domain.errors import FoyerError, field_error
from storage.polls import Poll

KINDS = ("single", "multiple", "rating", "word_cloud", "quiz")
MAX_OPTIONS = 20


class PollBody(msgspec.Struct, forbid_unknown_fields=True):
    """A poll definition (create, or replace a draft)."""

    kind: str
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    session_id: uuid.UUID | None = None  # None: an event-wide poll, shown in event:{id}
    options: list[Annotated[str, msgspec.Meta(max_length=100)]] = []  # choice kinds and quiz
    correct: list[int] = []  # quiz: indexes into `options`
    max_choices: Annotated[int, msgspec.Meta(ge=1, le=MAX_OPTIONS)] | None = None  # multiple
    scale_min: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1  # rating
    scale_max: Annotated[int, msgspec.Meta(ge=1, le=10)] = 5
    allow_change: bool = False
    show_results: str = "live"  # live | after_close: when attendees see the results
    points: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1  # quiz


def definition(body: PollBody) -> dict[str, Any]:
    """Validated column values for `polls` (raises `validation_failed` with the field)."""
    if body.kind not in KINDS:
        raise field_error("kind", "must be one of " + ", ".join(KINDS))
    if body.show_results not in ("live", "after_close"):
        raise field_error("show_results", "must be live or after_close")
    question = body.question.strip()
    if not question:
        raise field_error("question", "must not be empty")
    values: dict[str, Any] = {"kind": body.kind, "question": question, "allow_change": body.allow_change,
                              "results": body.show_results, "options": [], "correct": None, "max_choices": None,
                              "scale_min": None, "scale_max": None, "points": 1}
    if body.kind in ("single", "multiple", "quiz"):
        texts = [o.strip() for o in body.options]
        if not 2 <= len(texts) <= MAX_OPTIONS:
            raise field_error("options", f"must have 2 to {MAX_OPTIONS} options")
        if any(not t for t in texts):
            raise field_error("options", "options must not be empty")
        if len({t.casefold() for t in texts}) != len(texts):
            raise field_error("options", "options must be distinct")
        values["options"] = [{"id": f"o{i + 1}", "text": t} for i, t in enumerate(texts)]
    elif body.options:
        raise field_error("options", f"a {body.kind} poll has no options")
    if body.kind == "multiple":
        values["max_choices"] = min(body.max_choices or len(body.options), len(body.options))
    if body.kind == "quiz":
        if not body.correct or any(not 0 <= i < len(body.options) for i in body.correct) \
                or len(set(body.correct)) != len(body.correct):
            raise field_error("correct", "must list the indexes of the correct options")
        values["correct"] = sorted(f"o{i + 1}" for i in body.correct)
        values["points"] = body.points
        if len(body.correct) > 1:
            values["max_choices"] = min(body.max_choices or len(body.options), len(body.options))
    elif body.correct:
        raise field_error("correct", "only quizzes have correct answers")
    if body.kind == "rating":
        if body.scale_min >= body.scale_max:
            raise field_error("scale_max", "must be greater than scale_min")
        values["scale_min"], values["scale_max"] = body.scale_min, body.scale_max
    return values


# --- word clouds ---------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")


def normalize_word(text: str) -> str:
    """Fold an entry so that variants count together: NFKD, diacritics removed, case folded,
    whitespace collapsed, punctuation stripped at both ends ("  Café!" → "cafe")."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = _SPACE.sub(" ", stripped.casefold()).strip()
    return unicodedata.normalize("NFC", _EDGE.sub("", folded))


def folded_banned(words: tuple[str, ...]) -> re.Pattern[str] | None:
    folded = [normalize_word(w) for w in words if normalize_word(w)]
    if not folded:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in folded) + r")(?!\w)")


# --- votes ---------------------------------------------------------------------------------------

def vote_keys(poll: Poll, *, option: str | None, options: list[str] | None, value: int | None,
              text: str | None, banned: re.Pattern[str] | None, max_word: int) -> list[str]:
    """The vote as sorted counter keys, or `validation_failed` / `message_rejected`."""
    given = {k for k, v in (("option", option), ("options", options), ("value", value), ("text", text))
             if v is not None}
    ids = {o["id"] for o in poll.options}
    many = poll.kind == "multiple" or (poll.kind == "quiz" and len(poll.correct or ()) > 1)
    if poll.kind in ("single", "quiz") and not many:
        _only(given, "option")
        if option not in ids:
            raise field_error("option", "not an option of this poll")
        return [option]  # type: ignore[list-item]
    if many:
        _only(given, "options")
        assert options is not None
        if not 1 <= len(options) <= (poll.max_choices or len(ids)) or len(set(options)) != len(options):
            raise field_error("options", f"choose 1 to {poll.max_choices or len(ids)} distinct options")
        if not set(options) <= ids:
            raise field_error("options", "not an option of this poll")
        return sorted(options)
    if poll.kind == "rating":
        _only(given, "value")
        assert value is not None and poll.scale_min is not None and poll.scale_max is not None
        if not poll.scale_min <= value <= poll.scale_max:
            raise field_error("value", f"must be between {poll.scale_min} and {poll.scale_max}")
        return [str(value)]
    _only(given, "text")
    assert text is not None
    word = normalize_word(text)
    if not word:
        raise field_error("text", "must not be empty")
    if len(word) > max_word:
        raise field_error("text", f"at most {max_word} characters")
    if banned is not None and banned.search(word):
        raise FoyerError("message_rejected", "the entry contains a word that is not allowed here",
                         details={"reason": "banned_word"})
    return [word]


def _only(given: set[str], field: str) -> None:
    if given != {field}:
        extra = sorted(given - {field})
        raise field_error(extra[0] if extra else field, f"this poll takes `{field}`" if extra else "required")


# --- views ---------------------------------------------------------------------------------------

def _ms(t: Any) -> int | None:
    return int(t.timestamp() * 1000) if t is not None else None


def public_view(poll: Poll) -> dict[str, Any]:
    """What attendees see: never the correct answer of an open quiz."""
    view: dict[str, Any] = {"id": str(poll.id), "room": poll.room, "kind": poll.kind, "question": poll.question,
                            "state": poll.state, "allow_change": poll.allow_change, "show_results": poll.results,
                            "opened_at": _ms(poll.opened_at), "closed_at": _ms(poll.closed_at)}
    if poll.options:
        view["options"] = poll.options
    if poll.max_choices is not None:
        view["max_choices"] = poll.max_choices
    if poll.kind == "rating":
        view["scale"] = {"min": poll.scale_min, "max": poll.scale_max}
    if poll.kind == "quiz":
        view["points"] = poll.points
        view["multiple"] = len(poll.correct or ()) > 1
        if poll.state == "closed":
            view["correct"] = poll.correct
    return view


def staff_view(poll: Poll) -> dict[str, Any]:
    view = public_view(poll)
    view["session_id"] = str(poll.session_id) if poll.session_id else None
    if poll.kind == "quiz":
        view["correct"] = poll.correct
    return view


def results_visible(poll: Poll) -> bool:
    return poll.results == "live" or poll.state == "closed"


def results_view(poll: Poll, counts: dict[str, int]) -> dict[str, Any]:
    if poll.kind == "word_cloud":
        return {"words": [{"text": k, "count": n} for k, n in counts.items()]}
    if poll.kind == "rating":
        assert poll.scale_min is not None and poll.scale_max is not None
        scale = {str(v): counts.get(str(v), 0) for v in range(poll.scale_min, poll.scale_max + 1)}
        total = sum(scale.values())
        average = round(sum(int(k) * n for k, n in scale.items()) / total, 2) if total else None
        return {"counts": scale, "average": average}
    return {"counts": {o["id"]: counts.get(o["id"], 0) for o in poll.options}}
