"""Check-in at the door: online scans, offline scanners (signed check-in list, batch upload),
entry/exit, live counts per gate. See docs/checkin.md.

- `models`: request/response shapes and results;
- `scanning.CheckinService`: one scan (idempotent by nonce, one entry per ticket enforced by
  PostgreSQL), batches of offline scans with deterministic conflict resolution, stats;
- `lists`: the signed check-in list (full or delta by version) and its offline verification.
"""
