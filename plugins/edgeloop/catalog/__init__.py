"""The catalog: datasets, items and files in SQL (SQLite or PostgreSQL)."""
