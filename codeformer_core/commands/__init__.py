"""What the command lines share: the engine's options (`engine_arguments`), and the `download` and `export`
subcommands of `python -m codeformer_core`."""
