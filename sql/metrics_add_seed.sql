-- Warehouses written before seeds were part of an evaluation's identity gain the column (NULL there).
ALTER TABLE metrics ADD COLUMN IF NOT EXISTS seed INTEGER
