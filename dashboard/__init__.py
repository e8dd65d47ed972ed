"""Streamlit dashboard, read-only over the SQL storage. Arrives with the dashboard issue."""
