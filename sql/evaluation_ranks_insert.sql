-- Append one evaluation's per-user ranks (registered as _incoming).
INSERT INTO evaluation_ranks BY NAME SELECT * FROM _incoming
