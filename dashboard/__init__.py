"""Streamlit glue between the pages and ``gbs_core``: the workspace sidebar, cached wrappers, charts, the graph view
and error messages. Pages import from here and stay thin."""
