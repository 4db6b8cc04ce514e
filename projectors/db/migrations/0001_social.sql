-- The social app whose changes are captured. Applied once, in order, by `projectors db migrate`.
--
-- REPLICA IDENTITY, chosen per table (with the default, a Debezium delete event's `before` holds
-- the primary key and defaults for every other NOT NULL column, not the old values):
--   users      DEFAULT  every projection of a user is keyed by its id; the key is enough on delete.
--   posts      FULL     a post delete must say whose post it was (author's post counter, the feed
--                       of the author's followers) and whether it was public.
--   replies    FULL     a reply delete must say which post it answered (the post's reply counter,
--                       the REPLIED edge from its author).
--   follows, reactions, blocks, mutes
--              DEFAULT  the primary key holds every column a projection needs.
CREATE EXTENSION IF NOT EXISTS citext;

CREATE TABLE users (
    id           uuid PRIMARY KEY,
    handle       citext NOT NULL UNIQUE,
    display_name text NOT NULL DEFAULT '',
    bio          text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE posts (
    id          uuid PRIMARY KEY,
    author_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body        text NOT NULL,
    topics      text[] NOT NULL DEFAULT '{}',
    visibility  text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'private')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX posts_author_idx ON posts (author_id, created_at DESC);
ALTER TABLE posts REPLICA IDENTITY FULL;

CREATE TABLE replies (
    id          uuid PRIMARY KEY,
    post_id     uuid NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replies_post_idx ON replies (post_id);
ALTER TABLE replies REPLICA IDENTITY FULL;

CREATE TABLE follows (
    follower_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id),
    CONSTRAINT follows_no_self_follow CHECK (follower_id <> followee_id)
);
CREATE INDEX follows_followee_idx ON follows (followee_id);

CREATE TABLE reactions (
    post_id     uuid NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('like', 'love', 'laugh')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id, kind)
);

CREATE TABLE blocks (
    blocker_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id)
);

CREATE TABLE mutes (
    muter_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    muted_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (muter_id, muted_id)
);

-- Written by Debezium's heartbeat.action.query: keeps WAL flowing through the replication slot on a
-- quiet database so the slot's confirmed position advances and old WAL can be recycled. It is in the
-- publication (pgoutput skips transactions that touch no published table) but not captured.
CREATE TABLE projectors_heartbeat (
    id  int PRIMARY KEY,
    ts  timestamptz NOT NULL
);
