"""Adapters that accept mail and commit it to the inbound queue before acknowledging it (tier 2)."""
