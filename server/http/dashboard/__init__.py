"""The operator console: figures (aggregates), timelines, alerts and the dashboard."""
