"""Cache mounts (RUN --mount=type=cache) carried across sessions: found in the Dockerfile, planned, stored, seeded and saved."""
