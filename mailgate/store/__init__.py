"""Persistence: SQLAlchemy models, engine, repositories and attachment blobs (tier 2).

All SQL of mailgate lives in this package. Each unit of work is one synchronous Session run in
one `asyncio.to_thread` hop (see docs/architecture.md for the measured reason).
"""
