-- Least-privilege roles of the projectors, applied by `projectors db roles` as the database owner
-- after `projectors db migrate` (idempotent: it also takes back any privilege granted since). The
-- names in braces are filled in by projectors/db/roles.py, each quoted.
--
-- capture (Debezium): logs in with REPLICATION (its logical replication slot) and SELECTs the
--   published tables (the initial snapshot). Its one write is the heartbeat row that Debezium's
--   heartbeat.action.query keeps current: without it the slot of a quiet database never advances.
-- reader (the projection workers' spec reads): SELECT on the captured tables and nextval on the
--   read-ticket sequence (the version of what a worker writes). Nothing else.
ALTER ROLE {capture} LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS
    PASSWORD {capture_password};
ALTER ROLE {reader} LOGIN NOREPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS
    PASSWORD {reader_password};
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {capture}, {reader};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {capture}, {reader};
REVOKE CREATE ON SCHEMA public FROM {capture}, {reader};
GRANT CONNECT ON DATABASE {database} TO {capture}, {reader};
GRANT USAGE ON SCHEMA public TO {capture}, {reader};
GRANT SELECT ON {published} TO {capture};
GRANT INSERT, UPDATE ON {heartbeat} TO {capture};
GRANT SELECT ON {captured} TO {reader};
GRANT USAGE ON SEQUENCE {ticket} TO {reader};
