"""Streamlit dashboard over the swiftnas SQL storage (read-only): `swiftnas dashboard`."""
