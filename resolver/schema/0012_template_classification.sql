-- idnode schema, version 12: a data template's SNMS classification (registry/snms_templates.py): the GB/T 4754
-- industry codes (industryCategory, industrySpecific, industryTrade, industrySubclass) and SNMS's carrier type
-- (1 active identifier carrier, 2 other), as one jsonb object of the fields given; NULL for a template published
-- without them (/api/templates). A template may now also be revised in place (SNMS's PUT): the change-feed
-- triggers of 0007 already record every update of the table with its actor, and a mirror copies the new column
-- with the rest of the row.

ALTER TABLE templates ADD COLUMN classification jsonb;
