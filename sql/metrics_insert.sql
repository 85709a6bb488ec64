-- Append one evaluation's rows (registered as _incoming) to metrics.
INSERT INTO metrics BY NAME SELECT * FROM _incoming
