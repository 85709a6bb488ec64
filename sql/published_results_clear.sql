-- Empty published_results before the CSV is loaded again (inside the same transaction).
DELETE FROM published_results
