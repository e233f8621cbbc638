"""Access to the recorded answers of Orthanc, for the integration tests that compare Isengard with them.

The tests import this module after putting its folder on ``sys.path`` (see README.md).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from isengard.testing import ServerProcess, sample

HERE = Path(__file__).parent

#: Fields of the 1.10 recordings whose value depends on when the file was received.
VOLATILE = frozenset({"LastUpdate", "FileUuid", "IsStable", "Uuid", "ReceptionDate"})
#: Fields Orthanc 1.12 added to the answers the reference (1.10) gave: expected extra in Isengard's.
NEWER_FIELDS = frozenset({"Labels", "IsProtected", "Revision"})

#: Values the reference decodes wrongly and Isengard right (DCMTK's ISO 2022 support ends with escape sequences
#: of JIS X 0208; and in JIS X 0201 the byte of the backslash, which separates values, shows as a yen sign).
_DECODING_FIXES = {"ﾔﾏﾀﾞ^ﾀﾛｳ=;3ED^B@O:=$d$^$@^$?$m$&": "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"}


@cache
def load(name: str) -> Any:
    """One recording, e.g. ``load("patients")`` for patients.json."""
    return json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))


def upload_samples(server: ServerProcess, only: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Upload the samples the reference holds, in its order (the first instance of a resource sets its tags)."""
    answers = {}
    with server.client() as client:
        for path in load("upload-order"):
            if only is None or path in only:
                response = client.post("/instances", content=sample(path).read_bytes())
                assert response.status_code == 200, (path, response.text)
                answers[path] = response.json()
    return answers


def as_isengard(value: Any) -> Any:
    """A recorded answer with the values Isengard decodes right corrected, and the volatile fields left out."""
    if isinstance(value, dict):
        return {k: as_isengard(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [as_isengard(v) for v in value]
    if isinstance(value, str):
        return _DECODING_FIXES.get(value, value).replace("¥", "\\")
    return value


def comparable(answer: Any) -> Any:
    """An answer of Isengard without the volatile fields and the fields added after Orthanc 1.10."""
    if isinstance(answer, dict):
        return {k: comparable(v) for k, v in answer.items() if k not in VOLATILE | NEWER_FIELDS}
    if isinstance(answer, list):
        return [comparable(v) for v in answer]
    return answer
