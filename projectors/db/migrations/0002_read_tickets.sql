-- Read tickets: every time a projector reads the intended state of some items from this database it
-- first takes a ticket (nextval), then reads in a new snapshot. The ticket is the version stored with
-- what it wrote: a higher ticket was always taken later, so its snapshot is newer. Stores keep the
-- write with the highest ticket, so the newest read of an item always wins, whatever order batches,
-- replays and workers apply them in (docs/projections.md, "Versions").
CREATE SEQUENCE IF NOT EXISTS projectors_read_ticket;
