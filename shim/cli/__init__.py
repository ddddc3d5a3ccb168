"""The `dockcache` management CLI (typer). Never imported on the docker hot path."""
