"""Pure value types of the help desk: tickets, messages, threading decisions (stdlib only)."""
