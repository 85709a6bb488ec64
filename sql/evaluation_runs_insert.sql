-- Append one evaluation's run facts (registered as _incoming).
INSERT INTO evaluation_runs BY NAME SELECT * FROM _incoming
