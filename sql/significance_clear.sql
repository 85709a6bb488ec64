-- Drop one dataset's significance rows when no method has a baseline to be tested against.
DELETE FROM significance WHERE dataset = $dataset
