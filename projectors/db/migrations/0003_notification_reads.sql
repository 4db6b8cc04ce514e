-- Read state of notifications, written by the app (never by the projectors): a user has read every
-- notification whose latest activity is at or before `read_up_to`. Marking read is one upsert that
-- only moves forward (ReadClient docs, `projectors.projections.notifications.MARK_READ`):
--
--   INSERT INTO notification_reads (user_id, read_up_to) VALUES ($1, $2)
--   ON CONFLICT (user_id) DO UPDATE
--     SET read_up_to = greatest(notification_reads.read_up_to, excluded.read_up_to), updated_at = now();
--
-- A notification that gets new activity after it was read (a new reaction to the same post) is
-- unread again: its latest activity is newer than `read_up_to`. The notifications projection reads
-- this table like any other captured table, so replays, rebuilds and repairs keep the read state.
-- REPLICA IDENTITY DEFAULT: the key (the user) says whose notifications a change touches.
CREATE TABLE notification_reads (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    read_up_to  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
