"""docker buildx bake: targets resolved from the user's bake files, the cache for each, the shared builder per target."""
