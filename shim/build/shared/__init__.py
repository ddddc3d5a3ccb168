"""The host's shared builder: routing (pure), the buildx remote builder, thin and early loads, what it can resolve, the retry on the engine."""
