"""Commands an agent writes at the top of a reply (#status, #assign, #note ...), parsed and checked (tier 1).

Parsing is strict: anything that looks like a command but is not a valid one is an error, so
the caller can send nothing to the customer and mail the agent `VALID_COMMANDS_HELP` instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mailgate.rules.text import normalize

STATUSES = ("pending", "resolved", "closed", "open")
PRIORITIES = ("urgent", "high", "medium", "low")
MAX_TAG_CHARS = 50
# How much of a bad command an error message repeats back to the agent.
_MAX_ECHO_CHARS = 60

VALID_COMMANDS_HELP = """\
Commands go at the top of your reply, one per line:
#status pending|resolved|closed|open   set the ticket status
#priority urgent|high|medium|low       set the priority
#assign NAME-or-email                  give the ticket to an agent
#tag NAME / #untag NAME                add or remove a tag (letters, digits, ".", "_", "-")
#note                                  the whole reply is an internal note, never sent to the customer
#template NAME                         insert a canned response
#ack                                   (forwarded mail) send the customer an acknowledgement"""

# A command line: "#" and a word; "# heading" and "#1" are text, not commands.
_COMMAND = re.compile(r"#([^\W\d_][\w-]*)(?:\s+(.*))?", re.DOTALL)
# Several commands may share a line: "#status resolved #priority low".
_NEXT_COMMAND = re.compile(r"\s+(?=#[^\W\d_])")
_TAG = re.compile(rf"[a-z0-9._-]{{1,{MAX_TAG_CHARS}}}")
# Commands that set one value; two different values in one reply are an error.
_SINGLE_VALUED = ("status", "priority", "assign", "template")


@dataclass(frozen=True, slots=True)
class Command:
    """One valid command: its name and its normalised value (an agent's email for "assign")."""

    name: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The commands found, the reply without its command lines, and what was wrong."""

    commands: tuple[Command, ...]
    body: str
    errors: tuple[str, ...]

    @property
    def is_note(self) -> bool:
        return any(command.name == "note" for command in self.commands)

    def value(self, name: str) -> str | None:
        """The value of the last command of that name, or None."""
        values = [command.value for command in self.commands if command.name == name]
        return values[-1] if values else None


@dataclass(frozen=True, slots=True)
class _Context:
    known_agents: dict[str, str]
    canned: dict[str, str]  # lower-case name -> name as configured


def parse_commands(text: str, known_agents: dict[str, str], canned: frozenset[str]) -> CommandResult:
    """Commands from the lines at the top of `text` (blank lines between them allowed).

    `known_agents` maps a lower-case agent name or email to the agent's email; `canned` holds
    the canned response names. Parsing stops at the first line that is neither blank nor a command.
    """
    context = _Context(known_agents, {name.lower(): name for name in canned})
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[Command] = []
    errors: list[str] = []
    index, note_text = 0, ""
    while index < len(lines) and not note_text:
        line = lines[index].strip()
        if line and not _COMMAND.fullmatch(line):
            break
        index += 1
        for segment in _NEXT_COMMAND.split(line) if line else ():
            outcome = _parse_one(segment, context)
            if isinstance(outcome, str):
                errors.append(outcome)
                continue
            command, note_text = outcome
            commands.append(command)
            if note_text:  # "#note call back tomorrow": the rest of the line starts the body
                break
    body = "\n".join(([note_text] if note_text else []) + lines[index:]).strip("\n")
    return CommandResult(tuple(commands), body, tuple(errors + _conflicts(commands)))


def _parse_one(segment: str, context: _Context) -> tuple[Command, str] | str:
    """A command and any body text that followed it on its line, or an error message."""
    match = _COMMAND.fullmatch(segment)
    if match is None:
        return f'malformed command "{_echo(segment)}"'
    name = match.group(1).lower()
    argument = " ".join((match.group(2) or "").split())
    parser = _PARSERS.get(name)
    if parser is None:
        return f'unknown command "#{_echo(match.group(1))}"'
    if name == "note":
        return Command("note"), argument
    outcome = parser(argument, context)
    return outcome if isinstance(outcome, str) else (outcome, "")


def _echo(text: str) -> str:
    shown = "".join(char for char in text if char.isprintable())
    return shown if len(shown) <= _MAX_ECHO_CHARS else shown[: _MAX_ECHO_CHARS - 3] + "..."


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[str, _Context], Command | str]:
    def parse(argument: str, context: _Context) -> Command | str:
        value = argument.lower()
        if value in choices:
            return Command(name, value)
        return f"#{name} needs one of {', '.join(choices)}"

    return parse


def _assign(argument: str, context: _Context) -> Command | str:
    if not argument:
        return "#assign needs an agent name or email"
    who = argument.removeprefix("@").lower()
    email = context.known_agents.get(who)
    if email is None:
        return f'unknown agent "{_echo(argument)}"'
    return Command("assign", email)


def _tag(name: str) -> Callable[[str, _Context], Command | str]:
    def parse(argument: str, context: _Context) -> Command | str:
        # Accents are folded so "#tag lasku-ä" and "#tag lasku-a" are the same tag.
        tag = normalize(argument)
        if _TAG.fullmatch(tag) is None:
            return f'#{name} needs one name of a-z, 0-9, ".", "_" or "-" (at most {MAX_TAG_CHARS} characters)'
        return Command(name, tag)

    return parse


def _template(argument: str, context: _Context) -> Command | str:
    if not argument:
        return "#template needs a canned response name"
    name = context.canned.get(argument.lower())
    if name is None:
        return f'unknown template "{_echo(argument)}"'
    return Command("template", name)


def _no_value(name: str) -> Callable[[str, _Context], Command | str]:
    def parse(argument: str, context: _Context) -> Command | str:
        return f"#{name} takes no value" if argument else Command(name)

    return parse


_PARSERS: dict[str, Callable[[str, _Context], Command | str]] = {
    "status": _choice("status", STATUSES),
    "priority": _choice("priority", PRIORITIES),
    "assign": _assign,
    "tag": _tag("tag"),
    "untag": _tag("untag"),
    "note": _no_value("note"),
    "template": _template,
    "ack": _no_value("ack"),
}


def _conflicts(commands: list[Command]) -> list[str]:
    """Two different values for one single-valued command cannot both be meant."""
    errors = []
    for name in _SINGLE_VALUED:
        values = {command.value for command in commands if command.name == name}
        if len(values) > 1:
            errors.append(f"#{name} given more than once with different values")
    return errors
