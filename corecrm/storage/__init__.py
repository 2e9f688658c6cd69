"""Storage: schema, engine and bulk paths."""
