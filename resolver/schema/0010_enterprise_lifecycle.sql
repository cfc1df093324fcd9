-- idnode schema, version 10: the enterprise lifecycle (registry/enterprise_api.py): an enterprise's address, kept
-- with its name, contact and credit code, and changed with them by PATCH /api/enterprises/{prefix}. The existing
-- status column ('active'/'suspended') carries suspension; the change-feed triggers of 0007 already record every
-- update of the table with its actor.

ALTER TABLE enterprises ADD COLUMN address text;
