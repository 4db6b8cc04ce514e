-- Posts by their time: the redis projection counts a UTC day's public posts per topic (trending) and
-- reads a day's posts (hot posts, and every day of its window for verify); without this index each
-- of those reads scanned every post.
CREATE INDEX IF NOT EXISTS posts_created_idx ON posts (created_at);
