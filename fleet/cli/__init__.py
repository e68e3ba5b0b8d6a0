"""The `fleet` CLI: Typer app (app.py, base.py), one module per group of commands, output
formatting (output*.py). The top layer: cli -> ops -> engine / storage -> core."""
