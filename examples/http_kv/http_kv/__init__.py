"""A small HTTP key-value service (``http_kv.server``) and its splitbrain adapter."""
