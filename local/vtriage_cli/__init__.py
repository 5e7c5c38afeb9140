"""The `vtriage` command: one parser for the local runner's `run` (`vtriage_local`) and the operator
commands `send`, `cases` and `rollback` (`vtriage_ops`). The only package that imports both."""
