"""One module per subcommand: ``register`` adds its parser cheaply; the work is imported on run."""
