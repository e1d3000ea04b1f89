"""Agent commands at the top of a reply: each command, stripping, errors, and only-at-the-top."""

from __future__ import annotations

import pytest

from mailgate.rules.agent_commands import VALID_COMMANDS_HELP, Command, CommandResult, parse_commands

AGENTS = {
    "agnes agent": "agent@example.com",
    "agent@example.com": "agent@example.com",
    "bob": "bob@example.com",
    "bob@example.com": "bob@example.com",
}
CANNED = frozenset({"Refund", "printer-reset"})


def parse(text: str) -> CommandResult:
    return parse_commands(text, AGENTS, CANNED)


@pytest.mark.parametrize("status", ["pending", "resolved", "closed", "open"])
def test_status(status: str) -> None:
    """#status takes each of the four statuses and is stripped from the body."""
    result = parse(f"#status {status}\nDone.")
    assert result.commands == (Command("status", status),)
    assert result.body == "Done."
    assert result.errors == ()


@pytest.mark.parametrize("priority", ["urgent", "high", "medium", "low"])
def test_priority(priority: str) -> None:
    """#priority takes each of the four priorities."""
    assert parse(f"#priority {priority}").commands == (Command("priority", priority),)


def test_command_names_and_values_are_case_insensitive() -> None:
    """#STATUS Resolved means #status resolved."""
    assert parse("#STATUS Resolved").commands == (Command("status", "resolved"),)


def test_assign_by_name_or_email() -> None:
    """#assign resolves a known agent's name (spaces allowed) or email to the email."""
    assert parse("#assign Agnes Agent").commands == (Command("assign", "agent@example.com"),)
    assert parse("#assign BOB@example.com").commands == (Command("assign", "bob@example.com"),)
    assert parse("#assign @bob").commands == (Command("assign", "bob@example.com"),)


def test_assign_unknown_agent_is_an_error() -> None:
    """An agent not in the directory is an error naming them."""
    result = parse("#assign mallory@evil.example\nHi")
    assert result.commands == ()
    assert result.errors == ('unknown agent "mallory@evil.example"',)


def test_tag_and_untag_are_normalised() -> None:
    """Tags are lower-cased with accents folded; #untag works the same."""
    result = parse("#tag VIP\n#tag Lasku-Ä\n#untag old_tag.2")
    assert result.commands == (Command("tag", "vip"), Command("tag", "lasku-a"), Command("untag", "old_tag.2"))


@pytest.mark.parametrize("bad", ["#tag", "#tag two words", "#tag semi;colon", "#tag " + "x" * 51])
def test_malformed_tags(bad: str) -> None:
    """Missing, multi-word, odd-character and over-long tag names are errors."""
    result = parse(bad)
    assert result.commands == ()
    assert result.errors and result.errors[0].startswith("#tag needs one name")


def test_note_makes_the_reply_internal() -> None:
    """#note is recorded and the rest of the reply is the note's body."""
    result = parse("#note\nCustomer is on the phone with sales.")
    assert result.is_note
    assert result.body == "Customer is on the phone with sales."


def test_note_with_text_on_the_same_line() -> None:
    """Text after #note on its line starts the note's body."""
    result = parse("#note call them back tomorrow\nThey prefer mornings.")
    assert result.commands == (Command("note"),)
    assert result.body == "call them back tomorrow\nThey prefer mornings."


def test_template_names_a_canned_response() -> None:
    """#template returns the canned response's configured name, matched case-insensitively."""
    assert parse("#template refund").commands == (Command("template", "Refund"),)
    assert parse("#template nope").errors == ('unknown template "nope"',)
    assert parse("#template").errors == ("#template needs a canned response name",)


def test_ack() -> None:
    """#ack asks for the acknowledgement of a forwarded mail; it takes no value."""
    assert parse("#ack\nFrom the phone call.").commands == (Command("ack"),)
    assert parse("#ack please").errors == ("#ack takes no value",)


def test_several_commands_with_blank_lines_and_on_one_line() -> None:
    """Leading and interleaved blank lines are allowed; a line may carry several commands."""
    result = parse("\n\n#status resolved #priority low\n\n#tag printer\n\nFixed.\n\nAgnes")
    assert result.commands == (Command("status", "resolved"), Command("priority", "low"), Command("tag", "printer"))
    assert result.body == "Fixed.\n\nAgnes"
    assert result.value("status") == "resolved"


def test_commands_only_at_the_top() -> None:
    """A command after the first text line is text, neither parsed nor stripped."""
    result = parse("Hello,\n#status closed\nbye")
    assert result.commands == ()
    assert result.body == "Hello,\n#status closed\nbye"
    assert result.errors == ()


def test_hash_text_that_is_no_command_ends_parsing() -> None:
    """'#1' and a markdown '# heading' are text."""
    assert parse("#1 priority is the printer").commands == ()
    assert parse("# Steps\n#status open").body == "# Steps\n#status open"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("#stauts pending", 'unknown command "#stauts"'),
        ("#status", "#status needs one of pending, resolved, closed, open"),
        ("#status done", "#status needs one of pending, resolved, closed, open"),
        ("#status pending please", "#status needs one of pending, resolved, closed, open"),
        ("#priority extreme", "#priority needs one of urgent, high, medium, low"),
        ("#assign", "#assign needs an agent name or email"),
    ],
)
def test_unknown_and_malformed_commands(line: str, error: str) -> None:
    """Unknown and malformed commands are reported with a short message and stripped."""
    result = parse(f"{line}\nHello customer")
    assert result.errors == (error,)
    assert result.body == "Hello customer"


def test_conflicting_values_are_an_error() -> None:
    """Two different #status values in one reply cannot both be meant."""
    assert parse("#status open\n#status closed").errors == ("#status given more than once with different values",)
    assert parse("#status open\n#status open").errors == ()


def test_long_bad_command_is_shortened_in_the_error() -> None:
    """An error repeats at most a short part of what the agent wrote."""
    (error,) = parse("#" + "x" * 500).errors
    assert len(error) < 100


def test_help_lists_every_command() -> None:
    """The help text for the error mail names each valid command."""
    for name in ("#status", "#priority", "#assign", "#tag", "#untag", "#note", "#template", "#ack"):
        assert name in VALID_COMMANDS_HELP
