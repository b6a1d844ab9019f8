"""harness: Trio orchestration of real clusters, clients, runs and the CLI."""
