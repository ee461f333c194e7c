"""One module per `bert-jax` subcommand: flags + main(argv), no library logic."""
