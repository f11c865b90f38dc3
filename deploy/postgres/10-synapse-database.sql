-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d):
-- Synapse needs its own database with C collation (its docs: "Using Postgres").
CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
