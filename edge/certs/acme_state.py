"""What the ACME manager tells `cert status`: `acme/state.json` in the edge home, one entry per certificate."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.files import write_private

STATE_FILE = Path("acme") / "state.json"


@dataclass
class AcmeEntry:
    """One managed certificate: its names, how it is validated, and how the last attempts went."""

    names: tuple[str, ...]
    challenge: str
    next_attempt: datetime.datetime | None = None
    last_failure: str | None = None
    last_failure_at: datetime.datetime | None = None
    failures: int = 0  # in a row; 0 after a success
    last_success: datetime.datetime | None = None


def _time(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


def load_state(home: Path) -> dict[str, AcmeEntry]:
    """The saved entries by certificate name; {} when there are none (or the file is unreadable)."""
    try:
        raw = json.loads((Path(home) / STATE_FILE).read_text())
        return {
            stem: AcmeEntry(
                names=tuple(item["names"]),
                challenge=item["challenge"],
                next_attempt=_time(item.get("next_attempt")),
                last_failure=item.get("last_failure"),
                last_failure_at=_time(item.get("last_failure_at")),
                failures=int(item.get("failures", 0)),
                last_success=_time(item.get("last_success")),
            )
            for stem, item in raw.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_state(home: Path, entries: dict[str, AcmeEntry]) -> None:
    def encode(entry: AcmeEntry) -> dict:
        return {
            key: value.isoformat() if isinstance(value, datetime.datetime) else value
            for key, value in asdict(entry).items()
        }

    write_private(Path(home) / STATE_FILE, json.dumps({stem: encode(entry) for stem, entry in entries.items()}, indent=1))
