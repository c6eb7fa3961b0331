-- Events and schedule (events area, range 0030-0099): cancellation facts, changed fields in the
-- schedule change log.

ALTER TABLE events
    ADD COLUMN cancelled_at  timestamptz,
    ADD COLUMN cancel_reason text NOT NULL DEFAULT '';

-- Which fields an 'updated' change touched (e.g. {starts_at, ends_at}), for notifications
-- ("your session moved") without diffing snapshots.
ALTER TABLE schedule_changes
    ADD COLUMN fields text[] NOT NULL DEFAULT '{}';

-- "Running at instant T" for listings with a lower date bound (see storage/events.list_published):
-- containment on the period of published events.
CREATE INDEX events_published_period ON events USING gist (tstzrange(starts_at, ends_at))
    WHERE status = 'published';
