"""The project's tests, in folders that mirror its packages (commands/: the root's commands)."""
