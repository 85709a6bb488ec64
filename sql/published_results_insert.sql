-- Append the published figures CSV's rows (registered as _incoming); published_results_clear empties it first.
INSERT INTO published_results BY NAME SELECT * FROM _incoming
