"""Pure decisions about tickets: routing now; priority, SLA and auto-responses build on it (tier 1)."""
