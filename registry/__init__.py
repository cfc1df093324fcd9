"""The write path of idnode: registration, enterprises, templates, bulk import and the operator CLI."""
