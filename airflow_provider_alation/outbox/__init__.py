"""The durable outbox on disk, and its replay."""
