-- One dataset's rows of the reproduction view (ours beside published).
SELECT * FROM reproduction WHERE dataset = $dataset
