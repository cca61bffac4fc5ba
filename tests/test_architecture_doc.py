"""docs/architecture.md names the code it describes as `path` or `path:name` (paths relative to geodite/ or the
repository root, `name` a function, class, constant or Class.method defined in that file): every one must exist,
so that the document cannot drift from the code unnoticed (issue 31 found nine places where it had)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"`([\w/.-]+\.(?:py|cpp|md|yaml|toml))(?::([\w.]+))?`")


def _defines(source: str, name: str) -> bool:
    return bool(re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b|^\s*{name}\s*(?::[^=\n]+)?=", source, re.M))


def test_every_file_and_name_the_architecture_document_cites_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    references = REFERENCE.findall(text)
    assert len(references) >= 30, "the document should name the code it describes"
    missing = []
    for path, name in references:
        file = next((base / path for base in (ROOT / "geodite", ROOT) if (base / path).is_file()), None)
        if file is None:
            missing.append(path)
            continue
        source = file.read_text()
        if name and not all(_defines(source, part) for part in name.split(".")):
            missing.append(f"{path}:{name}")
    assert not missing, missing
