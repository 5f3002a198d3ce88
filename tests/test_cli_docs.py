"""docs/cli.md is exactly what docs/gen_cli.py makes from the typer apps, so it cannot drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def generator():
    spec = importlib.util.spec_from_file_location("gen_cli", REPO / "docs" / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date():
    expected = generator().render()
    assert (REPO / "docs" / "cli.md").read_text() == expected, (
        "docs/cli.md is out of date: run `python docs/gen_cli.py > docs/cli.md`"
    )


def test_cli_reference_documents_the_log_flags_and_examples():
    text = generator().render()
    for needle in ("#### `burrow tunnel run`", "`--log-format` TEXT", "`--access-log` TEXT", "### `burrow-edge serve`",
                   "```sh\nburrow tunnel create my-web-tunnel\n```"):
        assert needle in text
    assert "--root" not in text  # hidden options stay out of the reference
