-- Warehouses written before readers kept the brand gain the column ('' in their rows).
ALTER TABLE raw_items ADD COLUMN IF NOT EXISTS brand VARCHAR DEFAULT ''
