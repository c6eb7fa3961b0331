"""orjson behind the `json` module interface python-socketio/engine.io expect.

python-socketio sets a custom JSON module process-wide (on its Packet class); its `dumps` must
return `str` and tolerate `separators=` and other stdlib keyword arguments, which orjson's does not.
"""

from __future__ import annotations

from typing import Any

import orjson

from handlers.api import _json_default


def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()


def loads(data: str | bytes, *args: Any, **kwargs: Any) -> Any:
    return orjson.loads(data)
