"""Mail from mailgate: what to send (context, queueing), how it looks (render), how it leaves (relay, outbox)."""
