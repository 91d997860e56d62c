"""Prompts live in prompts/NAME.md: a system part, then a line `<!-- user -->`, then the user part.
Variables are {name}; a missing or unknown variable is an error that names the file."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
USER_MARK = "<!-- user -->"


class PromptError(Exception):
    pass


@dataclass(frozen=True)
class Prompt:
    name: str
    system: str
    user: str

    @property
    def variables(self) -> set[str]:
        names = set()
        for part in (self.system, self.user):
            names |= {f for _, f, _, _ in string.Formatter().parse(part) if f}
        return names

    def render(self, **values: str) -> tuple[str, str]:
        missing = self.variables - values.keys()
        extra = values.keys() - self.variables
        if missing or extra:
            raise PromptError(f"prompts/{self.name}.md: missing variables {sorted(missing)}, "
                              f"unexpected {sorted(extra)}")
        return self.system.format(**values), self.user.format(**values)


def load_prompt(name: str, folder: Path = PROMPTS_DIR) -> Prompt:
    path = folder / f"{name}.md"
    if not path.exists():
        raise PromptError(f"no prompt named {name!r}: {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if USER_MARK not in text:
        raise PromptError(f"{path}: no '{USER_MARK}' line separating the system and user parts")
    system, user = text.split(USER_MARK, 1)
    return Prompt(name, system.strip(), user.strip())
