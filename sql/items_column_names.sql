-- The columns the items table has (older or hand-made warehouses may lack `category`).
SELECT column_name
FROM information_schema.columns
WHERE table_name = 'items'
