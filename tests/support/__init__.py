"""Helpers shared by the test suite: databases, mail builders, SMTP clients, the daemon as a process."""
