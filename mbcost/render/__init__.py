"""Rendering: turns result objects into tables (rich, markdown, CSV) and JSON. Computes nothing."""
