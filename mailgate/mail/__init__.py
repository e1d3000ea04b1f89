"""Parsing inbound mail into mailgate value types."""
