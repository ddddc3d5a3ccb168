"""Images across sessions: pulls routed through the host's pull-through registry caches."""
